//! `strata snapshot …` and `strata image …`, and filling a disk made with
//! `disk add --from-image`.

use std::path::Path;
use std::process::ExitCode;

use super::progress::{Drawer, Unit};
use super::secrets::open_vault;
use super::{ImageCommand, SnapshotCommand, VaultArgs};
use crate::store::lock::Access;
use crate::store::snapshots::{self, CopyStats};
use crate::store::{Config, StoreLock};

/// Progress of a copy of backing objects.
fn copy_progress(what: &str) -> Drawer {
    Drawer::new(what, Unit::Objects, false)
}

fn describe(s: &CopyStats) -> String {
    format!(
        "{} objects, {} bytes ({} files shared by reflink)",
        s.objects, s.bytes, s.reflinked
    )
}

/// Runs a snapshot command.
pub fn run(cmd: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SnapshotCommand::Create {
            store,
            disk,
            name,
            vault,
        } => create(&store, &disk, &name, &vault)?,
        SnapshotCommand::List { store, json } => {
            let config = Config::read(&store)?;
            if json {
                let v: Vec<_> = config
                    .snapshots
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "disk": s.source.name,
                            "name": s.name,
                            "created": s.created,
                            "layers": s.source.layers.iter().map(|w| serde_json::json!({
                                "layer": w.layer.name(),
                                "key": w.key.name,
                                "key_version": w.key.version,
                                "dek_generation": w.generation,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<12} {:<20} {:<12} LAYERS", "DISK", "SNAPSHOT", "CREATED");
                for s in &config.snapshots {
                    let layers: Vec<&str> =
                        s.source.layers.iter().map(|w| w.layer.name()).collect();
                    println!(
                        "{:<12} {:<20} {:<12} {}",
                        s.source.name,
                        s.name,
                        super::disk::fmt_time(s.created),
                        layers.join(", ")
                    );
                }
            }
        }
        SnapshotCommand::Delete {
            store,
            disk,
            name,
            vault,
        } => {
            let _lock =
                StoreLock::offline(&store, "snapshot delete", "deleting a snapshot is offline")?;
            let mut v = open_vault(&vault)?;
            snapshots::delete_snapshot(&store, &mut v, &disk, &name)?;
            println!("deleted snapshot {name} of disk {disk}");
        }
        SnapshotCommand::Restore {
            store,
            disk,
            name,
            vault,
        } => {
            let _lock = StoreLock::offline(
                &store,
                "snapshot restore",
                "restoring a snapshot is offline",
            )?;
            let mut v = open_vault(&vault)?;
            let progress = copy_progress("restoring");
            let st = snapshots::restore_snapshot(&store, &mut v, &disk, &name, &progress);
            progress.end(st.is_ok());
            let st = st?;
            println!(
                "disk {disk} restored to snapshot {name} ({}); it has the snapshot's keys again",
                describe(&st)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create(store: &Path, disk: &str, name: &str, vault: &VaultArgs) -> anyhow::Result<()> {
    let access = StoreLock::offline_or_mounted(
        store,
        "snapshot create",
        "a snapshot is taken offline or through the running mount",
    )?;
    let mut v = open_vault(vault)?;
    if let Access::Offline(_lock) = access {
        let progress = copy_progress("copying");
        let made = snapshots::create_snapshot(store, &mut v, disk, name, &progress);
        progress.end(made.is_ok());
        let (snap, st) = made?;
        println!(
            "snapshot {} of disk {} taken offline: {}",
            snap.name,
            disk,
            describe(&st)
        );
        return Ok(());
    }
    // Online: the daemon holds writes while it copies; this process
    // records the snapshot in the config.
    let (source, _) = snapshots::prepare_snapshot(store, &v, disk, name)?;
    // Push the kernel's dirty pages to the daemon first, so that what was
    // written before this command is in the snapshot, fsynced or not.
    if let Ok(st) = crate::control::status(store) {
        if let Ok(dir) = std::fs::File::open(&st.mountpoint) {
            let _ = crate::platform::sync_filesystem(std::os::fd::AsFd::as_fd(&dir));
        }
    }
    let reply = crate::control::request(
        store,
        &serde_json::json!({ "op": "snapshot", "disk": disk, "name": name }),
    )?;
    snapshots::commit_snapshot(store, &mut v, source, name)?;
    println!(
        "snapshot {name} of disk {disk} taken online (writes held during the copy): {} objects, {} bytes ({} files shared by reflink)",
        reply["objects"], reply["bytes"], reply["reflinked"]
    );
    match crate::control::request(
        store,
        &serde_json::json!({ "op": "show-snapshot", "disk": disk, "name": name }),
    ) {
        Ok(_) => println!("the mount shows it under .snapshots/{disk}/{name}/"),
        Err(e) => println!("({e})"),
    }
    Ok(())
}

/// Runs an image command.
pub fn run_image(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Create {
            store,
            name,
            from,
            vault,
        } => {
            let access = StoreLock::offline_or_mounted(
                &store,
                "image create",
                "an image is made offline, or from a snapshot alongside the running mount",
            )?;
            let mut v = open_vault(&vault)?;
            let progress = copy_progress("copying");
            let made = snapshots::create_image(
                &store,
                &mut v,
                &name,
                &from,
                matches!(access, Access::Mounted),
                &progress,
            );
            progress.end(made.is_ok());
            let (img, st) = made?;
            println!(
                "image {} made from {}: {}",
                img.name,
                img.from,
                describe(&st)
            );
        }
        ImageCommand::List { store, json } => {
            let config = Config::read(&store)?;
            if json {
                let v: Vec<_> = config
                    .images
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "name": i.name,
                            "from": i.from,
                            "created": i.created,
                            "layers": i.source.layers.iter().map(|w| w.layer.name()).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<20} {:<24} {:<12} LAYERS", "IMAGE", "FROM", "CREATED");
                for i in &config.images {
                    let layers: Vec<&str> =
                        i.source.layers.iter().map(|w| w.layer.name()).collect();
                    println!(
                        "{:<20} {:<24} {:<12} {}",
                        i.name,
                        i.from,
                        super::disk::fmt_time(i.created),
                        layers.join(", ")
                    );
                }
            }
        }
        ImageCommand::Delete { store, name, vault } => {
            let _access = StoreLock::offline_or_mounted(
                &store,
                "image delete",
                "an image is deleted offline or alongside the running mount",
            )?;
            let mut v = open_vault(&vault)?;
            snapshots::delete_image(&store, &mut v, &name)?;
            println!("deleted image {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fills a new disk from an image (re-encrypting under the disk's DEKs).
pub fn fill_from_image(
    store: &Path,
    vault: &mut crate::vault::Vault,
    disk: &str,
    image: &str,
) -> anyhow::Result<()> {
    let progress = Drawer::new("re-encrypting the image", Unit::Objects, false);
    let n = snapshots::fill_from_image(store, vault, disk, image, &progress);
    progress.end(n.is_ok());
    let n = n?;
    println!("disk {disk} filled from image {image}: {n} objects re-encrypted under its own keys");
    Ok(())
}
