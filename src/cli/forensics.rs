//! `inspect`, `verify` and `scan`: the forensic commands. They exit 0 when
//! all is well, 1 when they found a problem (damage, a leak) and 2 when
//! they could not run (a non-store, a bad vault, unreadable input).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::progress::{Drawer, Unit};
use super::secrets::open_vault;
use super::VaultArgs;
use crate::forensics::{inspect, scan, verify};
use crate::vault::Vault;

/// Exit code: could not run.
const COULD_NOT_RUN: u8 = 2;

/// The vault, when any vault flag is given (the forensic commands work
/// without keys by default).
fn optional_vault(args: &VaultArgs) -> anyhow::Result<Option<Vault>> {
    if args.vault.is_none() && !args.has_unlock_source() {
        return Ok(None);
    }
    open_vault(args).map(Some)
}

fn could_not_run(e: impl std::fmt::Display) -> ExitCode {
    let msg = e.to_string().replace('\n', " ");
    eprintln!("strata: {msg}");
    ExitCode::from(COULD_NOT_RUN)
}

fn print_json(value: &impl serde::Serialize) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => could_not_run(e),
    }
}

/// Options of `strata inspect`.
pub struct InspectArgs<'a> {
    pub target: &'a Path,
    pub path: Option<&'a Path>,
    pub json: bool,
    pub block: Option<u64>,
    pub out: Option<PathBuf>,
    pub decrypt_to: Option<PathBuf>,
    pub vault: &'a VaultArgs,
}

/// `strata inspect`.
pub fn run_inspect(a: InspectArgs<'_>) -> ExitCode {
    let vault = match optional_vault(a.vault) {
        Ok(v) => v,
        Err(e) => return could_not_run(format!("{e:#}")),
    };
    if let Some(plain) = a.path {
        let Some(vault) = vault else {
            return could_not_run(
                "--path needs the vault (--vault and --passphrase-file): names are encrypted",
            );
        };
        return match inspect::backing_of(a.target, &vault, plain) {
            Ok(p) if a.json => print_json(&serde_json::json!({ "path": plain, "backing": p })),
            Ok(p) => {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }
            Err(e) => could_not_run(e),
        };
    }
    if a.target.is_dir() {
        return could_not_run(format!(
            "{} is a directory: give a backing file, or a store with --path DISK/some/file",
            a.target.display()
        ));
    }
    let opts = inspect::Options {
        block: a.block,
        out: a.out,
        decrypt_to: a.decrypt_to,
    };
    if opts.block.is_some() && vault.is_none() || opts.decrypt_to.is_some() && vault.is_none() {
        return could_not_run(
            "--block and --decrypt-to need the vault (--vault and --passphrase-file)",
        );
    }
    let report = match inspect::inspect(a.target, vault.as_ref(), &opts) {
        Ok(r) => r,
        Err(e) => return could_not_run(e),
    };
    let bad = report.header_ok == Some(false)
        || report.bad_blocks.as_ref().is_some_and(|b| !b.is_empty());
    // A block written to stdout is the output; the report would corrupt it.
    let block_to_stdout = opts.block.is_some() && opts.out.is_none();
    let code = if a.json && !block_to_stdout {
        print_json(&report)
    } else {
        if !block_to_stdout {
            inspect::print(&report);
        }
        ExitCode::SUCCESS
    };
    if bad {
        ExitCode::FAILURE
    } else {
        code
    }
}

/// `strata verify`.
pub fn run_verify(store: &Path, json: bool, repair: bool, vault: &VaultArgs) -> ExitCode {
    // Repair moves backing files: it needs the store to itself.
    let _lock = match repair
        .then(|| crate::store::StoreLock::offline(store, "verify --repair", "repair is offline"))
        .transpose()
    {
        Ok(l) => l,
        Err(e) => return could_not_run(e),
    };
    let vault = match optional_vault(vault) {
        Ok(v) => v,
        Err(e) => return could_not_run(format!("{e:#}")),
    };
    let opts = verify::Options { repair };
    let progress = Drawer::new("verifying", Unit::Files, json);
    let report = verify::verify(store, vault.as_ref(), &opts, &progress);
    progress.end(report.is_ok());
    let report = match report {
        Ok(r) => r,
        Err(e) => return could_not_run(e),
    };
    let code = if json {
        print_json(&report)
    } else {
        verify::print(&report);
        ExitCode::SUCCESS
    };
    if report.issues.is_empty() {
        code
    } else {
        ExitCode::FAILURE
    }
}

/// `strata scan`.
pub fn run_scan(store: &Path, needles: &[String], json: bool, include_config: bool) -> ExitCode {
    let progress = Drawer::new("scanning", Unit::Bytes, json);
    let report = scan::scan(store, needles, include_config, &progress);
    progress.end(report.is_ok());
    let report = match report {
        Ok(r) => r,
        Err(e) => return could_not_run(e),
    };
    let code = if json {
        print_json(&report)
    } else {
        scan::print(&report);
        ExitCode::SUCCESS
    };
    if report.leaked() {
        ExitCode::FAILURE
    } else {
        code
    }
}
