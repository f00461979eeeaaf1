//! The command line: clap definitions (pure parsing, no I/O) and one module
//! per command family. `mount` is the one place that wires vault, store,
//! cache and FUSE together.

mod disk;
mod forensics;
pub mod helper;
mod init;
mod mount;
mod progress;
mod secrets;
mod snapshot;
mod vault_cmd;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::store::Preset;

/// strata: the disk-encryption layers of a cloud VM, on one machine.
#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about,
    long_about = None,
    after_long_help = "strata STORE MOUNTPOINT -o OPTIONS is `strata mount` as mount(8) and /etc/fstab run it \
(type fuse.strata): see strata-mount(1).

Long commands (verify, scan, disk rekey, disk encrypt, snapshot create and restore, image \
create, disk add --from-image) draw a progress bar with rate and ETA on stderr when it is a \
terminal, else print a plain progress line every STRATA_PROGRESS_INTERVAL (default 10s); \
none with --json.

Shell completions: strata completions bash|zsh|fish."
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The long help of `mount`: the mount(8) and fstab form, passphrase
/// helpers, logs and idle unmount.
const MOUNT_HELP: &str = "\
mount(8) and /etc/fstab (type fuse.strata):

  mount -t fuse.strata STORE MOUNTPOINT -o vault=FILE,passphrase_file=FILE[,OPTION...]

  STORE MOUNTPOINT fuse.strata vault=FILE,passphrase_file=FILE,nofail,_netdev 0 0

mount.fuse3 (package fuse3) runs `strata STORE MOUNTPOINT -o OPTIONS` with strata found on \
the system PATH (/usr/bin, /usr/local/bin). Each option is named after a long flag \
above, dashes or underscores alike (allow_other, cache_size=BYTES, idle=10m, ro, \
passphrase_command=CMD with spaces written \\040 in fstab). auto, noauto, nofail, \
_netdev, user, x-systemd.* and the like are for mount(8) and systemd and pass through; \
rw, exec, atime, relatime, dev, suid, nodev and nosuid are accepted (strata always \
mounts nodev,nosuid). `umount MOUNTPOINT` unmounts and the daemon exits. The mount's \
type is fuse.strata in /proc/mounts, findmnt and df -T.

Passphrase: --passphrase-file, --passphrase-command (e.g. \
\"systemd-ask-password --credential=strata.passphrase Vault passphrase:\"; run without a \
shell unless --passphrase-shell; a non-zero exit or empty output fails), \
--passphrase-credential NAME ($CREDENTIALS_DIRECTORY/NAME of a systemd unit), else the \
terminal. The unit template strata-mount@.service (contrib/systemd/, installed by the \
Debian package) mounts a store with its passphrase from a systemd credential.

Logs: with -f on stderr; with --log-file to that file; else the daemon logs to the \
systemd journal when journald runs (fields STORE, MOUNTPOINT, DISK, ERRNO; \
journalctl SYSLOG_IDENTIFIER=strata), else to syslog. A block that fails its check \
(EIO), a full backing store (ENOSPC) and a revoked key are logged with the disk; never \
a file name, contents or a key.

--idle DURATION unmounts after that long without an open file or a request; a mount in \
use (an open file, a running request, a working directory inside) is never unmounted.

macOS (macFUSE): one FUSE thread (--threads other than 1 is refused); no mount(8), fstab \
or systemd form (a launchd agent is in contrib/launchd/, running `strata mount -f`); logs \
go to syslog (/var/run/syslog, into the unified log); fsync is F_FULLFSYNC on the \
backing file; a revoked key answers EACCES; `._*` and .DS_Store files are refused \
(noappledouble) and extended attributes of any name are stored as user.NAME.";

/// Arguments of `mount`. The same options are accepted from mount(8) and
/// /etc/fstab as `-o name=value,flag,…`, named after the long flags (see
/// [`helper`]).
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Store directory.
    pub store: PathBuf,
    /// Empty directory to mount on.
    pub mountpoint: PathBuf,
    /// Stay in the foreground (logs to stderr).
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount read-only.
    #[arg(long)]
    pub ro: bool,
    /// Block cache size in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub cache_size: u64,
    /// Let other users use the mount.
    #[arg(long)]
    pub allow_other: bool,
    /// Forbid running programs from the mount.
    #[arg(long)]
    pub noexec: bool,
    /// Do not update access times.
    #[arg(long)]
    pub noatime: bool,
    /// Append logs to FILE [default: with -f stderr, else the journal when
    /// journald runs, else syslog; on macOS syslog].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// FUSE worker threads [default: four per CPU, 4 to 8; on macOS
    /// one, the only number there].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Unmount after DURATION (e.g. 90s, 10m, 1h30m) in which no file was
    /// open and no request came; a busy mount is never unmounted.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle: Option<std::time::Duration>,
    /// Seconds between two checks of the keys held by a key service (a
    /// revocation there reaches this mount within about twice this).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub key_check_interval: u64,
    /// Seconds a mount keeps serving from the keys in memory while their
    /// key service cannot be reached; then the dependent disks are refused
    /// until it answers again.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub key_grace: u64,
    /// The vault.
    #[command(flatten)]
    pub vault: VaultArgs,
}

/// Where the vault is and how to unlock it. At most one source of the
/// passphrase (or the recovery key) is given; without one, the terminal is
/// asked.
#[derive(Debug, Clone, Default, Args)]
pub struct VaultArgs {
    /// Vault file [default: $XDG_CONFIG_HOME/strata/vault, i.e. ~/.config/strata/vault].
    #[arg(long, value_name = "FILE")]
    pub vault: Option<PathBuf>,
    /// Read the passphrase from FILE (one trailing newline is ignored)
    /// instead of asking on the terminal.
    #[arg(long, value_name = "FILE", group = "unlock")]
    pub passphrase_file: Option<PathBuf>,
    /// Run CMD and read the passphrase from its standard output (one
    /// trailing newline is ignored), as gocryptfs' -extpass. Given once, CMD
    /// is split on whitespace; given several times, each is one argument.
    /// No shell is involved unless --passphrase-shell.
    #[arg(long, value_name = "CMD", group = "unlock", allow_hyphen_values = true)]
    pub passphrase_command: Vec<String>,
    /// Run the --passphrase-command through /bin/sh -c.
    #[arg(long, requires = "passphrase_command")]
    pub passphrase_shell: bool,
    /// Read the passphrase from the systemd credential NAME
    /// ($CREDENTIALS_DIRECTORY/NAME, set up by LoadCredential= in a unit).
    #[arg(long, value_name = "NAME", group = "unlock")]
    pub passphrase_credential: Option<String>,
    /// Unlock with the recovery key read from FILE instead of the passphrase.
    #[arg(long, value_name = "FILE", group = "unlock")]
    pub recovery_key_file: Option<PathBuf>,
}

impl VaultArgs {
    /// Whether any way of unlocking without the terminal was given.
    pub fn has_unlock_source(&self) -> bool {
        self.passphrase_file.is_some()
            || !self.passphrase_command.is_empty()
            || self.passphrase_credential.is_some()
            || self.recovery_key_file.is_some()
    }
}

/// Where a customer key held by a key service lives and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Key service address, https://HOST[:PORT] (plain http only on
    /// loopback); repeat it for each node of a cluster, tried in order.
    #[arg(long = "kms-address", value_name = "URL")]
    pub addresses: Vec<String>,
    /// The key's name in the service [default: the vault key's name].
    #[arg(long = "kms-key", value_name = "NAME")]
    pub key: Option<String>,
    /// Where the Transit engine is mounted.
    #[arg(long = "kms-mount", value_name = "PATH", default_value = "transit")]
    pub mount: String,
    /// PEM file of the CA that signs the service's certificates [default:
    /// the built-in public roots].
    #[arg(long = "kms-ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// File holding a token (mode 0600), read again at every check.
    #[arg(long = "kms-token-file", value_name = "FILE", conflicts_with_all = ["role_id_file", "secret_id_file"])]
    pub token_file: Option<PathBuf>,
    /// File holding an AppRole role id (mode 0600).
    #[arg(
        long = "kms-role-id-file",
        value_name = "FILE",
        requires = "secret_id_file"
    )]
    pub role_id_file: Option<PathBuf>,
    /// File holding an AppRole secret id (mode 0600).
    #[arg(
        long = "kms-secret-id-file",
        value_name = "FILE",
        requires = "role_id_file"
    )]
    pub secret_id_file: Option<PathBuf>,
    /// Where the AppRole auth method is mounted.
    #[arg(
        long = "kms-approle-mount",
        value_name = "PATH",
        default_value = "approle"
    )]
    pub approle_mount: String,
    /// Let strata administer the key in the service: make it if missing,
    /// rotate, disable, enable, set its rotation period.
    #[arg(long = "kms-manage")]
    pub manage: bool,
    /// How long one request to the service may take, in milliseconds (a
    /// command or a mount allows six times that over retries and failover).
    #[arg(long = "kms-timeout-ms", value_name = "MS", default_value_t = 5000)]
    pub timeout_ms: u32,
}

/// Argon2id parameters for a new vault.
#[derive(Debug, Clone, Args)]
pub struct KdfArgs {
    /// Argon2id memory in KiB for a new vault or passphrase (1024 to 1048576).
    #[arg(long, value_name = "KIB", default_value_t = crate::vault::KdfParams::default().memory_kib)]
    pub kdf_memory: u32,
    /// Argon2id passes for a new vault or passphrase (1 to 10).
    #[arg(long, value_name = "N", default_value_t = crate::vault::KdfParams::default().iterations)]
    pub kdf_iterations: u32,
}

/// The commands.
#[derive(Debug, Subcommand)]
#[allow(missing_docs)]
pub enum Command {
    /// Create a store with disks os, data and temp, layered by a preset
    /// (creates the vault and the keys it needs if they do not exist).
    Init {
        /// Store directory (new or empty).
        store: PathBuf,
        /// Which layers to turn on.
        #[arg(long, value_enum, default_value = "general")]
        preset: Preset,
        /// Region label of the store (and of a vault created now).
        #[arg(long, default_value = "local")]
        region: String,
        /// Override the preset's host encryption (fixed after init).
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        host: Option<bool>,
        /// Age in days after which platform keys rotate.
        #[arg(long, default_value_t = 90)]
        pmk_rotation_days: u32,
        /// Customer key of the storage CMK layer and of the preset's scope,
        /// instead of the preset's (cmk, fleet-cmk, max-cmk); it may be a key
        /// held by a key service (made first with `vault key create`).
        #[arg(long, value_name = "KEY")]
        cmk: Option<String>,
        #[command(flatten)]
        vault: VaultArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Mount a store: one directory per disk under MOUNTPOINT. One daemon
    /// per store: it holds the store's lock for its life, and a second
    /// mount is refused naming the first.
    #[command(after_long_help = MOUNT_HELP)]
    Mount(MountArgs),
    /// Disks of a store: add, list, show.
    Disk {
        /// Disk command.
        #[command(subcommand)]
        command: DiskCommand,
    },
    /// Scopes: one customer key bound to a group of disks.
    Scope {
        /// Scope command.
        #[command(subcommand)]
        command: ScopeCommand,
    },
    /// Unmount a strata mount; returns once its daemon has let go of the
    /// store.
    Umount {
        /// The mountpoint.
        mountpoint: PathBuf,
    },
    /// Decode a backing file's header (no key needed); with the vault,
    /// check its tags, name it and decrypt it. With --path, find the backing
    /// file of a plaintext path. Exit 0 sound, 1 damaged, 2 could not run.
    Inspect {
        /// A backing file, or a store with --path.
        target: PathBuf,
        /// Plaintext path DISK/some/file to look up in the store TARGET.
        #[arg(long, value_name = "DISK/PATH")]
        path: Option<PathBuf>,
        /// Print JSON (documented in docs/FORENSICS.md).
        #[arg(long)]
        json: bool,
        /// Write the plaintext of block N (to --out, or stdout).
        #[arg(long, value_name = "N")]
        block: Option<u64>,
        /// Where --block goes.
        #[arg(long, value_name = "FILE", requires = "block")]
        out: Option<PathBuf>,
        /// Write the whole plaintext of the file to FILE.
        #[arg(long, value_name = "FILE")]
        decrypt_to: Option<PathBuf>,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Check every header, block tag and name of a store's persistent disks,
    /// in parallel; without the vault, structure only. Exit 0 clean, 1
    /// problems found, 2 could not run.
    Verify {
        /// Store directory.
        store: PathBuf,
        /// Print JSON (documented in docs/FORENSICS.md).
        #[arg(long)]
        json: bool,
        /// Offline: restore directory ids from their copies, seal blocks
        /// torn by a crash as found, and move files whose header is lost
        /// to lost+found; never deletes.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Read every byte of a backing store looking for plaintext: needles
    /// (UTF-8 and UTF-16LE) and low-entropy files. Exit 0 nothing found, 1
    /// plaintext found, 2 could not run.
    Scan {
        /// Store directory.
        store: PathBuf,
        /// Text to look for (repeatable).
        #[arg(long = "needle", value_name = "TEXT")]
        needles: Vec<String>,
        /// Print JSON (documented in docs/FORENSICS.md).
        #[arg(long)]
        json: bool,
        /// Also scan the store's config file(s).
        #[arg(long)]
        include_config: bool,
    },
    /// Show a running mount: disks, layers, revoked disks, open files, cache
    /// size and hit rate, bytes read and written, the control socket.
    Status {
        /// The mountpoint or the store of a running mount.
        target: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Snapshots: point-in-time, crash-consistent copies of a disk.
    Snapshot {
        /// Snapshot command.
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Images: disks to make new disks from.
    Image {
        /// Image command.
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// The vault: keys sealed with a passphrase.
    Vault {
        /// Vault command.
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Print a shell completion script (bash, zsh, fish) on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Vault commands.
#[derive(Debug, Subcommand)]
#[allow(missing_docs)]
pub enum VaultCommand {
    /// Create a vault and print its recovery key once.
    Create {
        /// Region label of the vault.
        #[arg(long, default_value = "local")]
        region: String,
        #[command(flatten)]
        vault: VaultArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// List keys: names, kinds, versions, state, creation (never material).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Change the passphrase, with a new master key: the old passphrase
    /// then opens neither the vault nor its backup. No store is touched.
    /// The recovery slot is made again: keep the recovery key by giving it
    /// (--keep-recovery-key, or unlock with --recovery-key-file), or get a
    /// new one (--new-recovery-key). Refused while a mount uses the vault.
    Passwd {
        /// Read the new passphrase from FILE instead of asking twice.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// The current recovery key, read from FILE, to keep working.
        #[arg(long, value_name = "FILE", conflicts_with = "new_recovery_key")]
        keep_recovery_key: Option<PathBuf>,
        /// Replace the recovery key too (the new one is printed once).
        #[arg(long)]
        new_recovery_key: bool,
        #[command(flatten)]
        vault: VaultArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Replace the recovery key (printed once), with a new master key: the
    /// old recovery key then opens neither the vault nor its backup. Needs
    /// the passphrase. Refused while a mount uses the vault.
    RecoveryKey {
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Manage keys.
    Key {
        /// Key command.
        #[command(subcommand)]
        command: KeyCommand,
    },
}

/// Key commands.
#[derive(Debug, Subcommand)]
#[allow(missing_docs)]
pub enum KeyCommand {
    /// Create a key: in the vault, or, with --kms-address, a customer key
    /// held by a key service (OpenBao or Vault Transit; the vault keeps only
    /// where it is and how to reach it).
    Create {
        /// Key name ([A-Za-z0-9._-], up to 64 characters).
        name: String,
        /// Key kind.
        #[arg(long, default_value = "customer", value_parser = ["platform", "host", "customer"])]
        kind: String,
        #[command(flatten)]
        service: Box<ServiceArgs>,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Add a version to a key (in the vault, or in the key service that holds
    /// it when this vault may administer it); stores given with --store are
    /// rewrapped to the newest version now (no data is rewritten; a running
    /// mount of such a store follows the rewrap), others at their next
    /// mount.
    Rotate {
        /// Key name.
        name: String,
        /// Stores to rewrap at once.
        #[arg(long = "store", value_name = "STORE")]
        stores: Vec<PathBuf>,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Disable (revoke) a key or one version (NAME@VERSION): disks that
    /// depend on it become unavailable, at mount and within seconds in a
    /// running mount. Nothing is deleted. A key held by a key service is
    /// disabled there (a soft delete), for every machine that uses it.
    Disable {
        /// NAME or NAME@VERSION.
        key: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Enable a key or one version again.
    Enable {
        /// NAME or NAME@VERSION.
        key: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Set or clear a key's rotation policy.
    Policy {
        /// Key name.
        name: String,
        /// Rotate when the newest version is this many days old (0 clears).
        #[arg(long, value_name = "DAYS")]
        rotate_days: u32,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

/// Disk commands.
#[derive(Debug, Subcommand)]
#[allow(missing_docs)]
pub enum DiskCommand {
    /// Add a disk (data, or temp) with its own DEKs (offline).
    Add {
        /// Store directory.
        store: PathBuf,
        /// Disk name (its directory in the mount).
        name: String,
        /// data or temp.
        #[arg(long, default_value = "data")]
        kind: String,
        /// Turn the guest layer on (ADE), keyed by `guest-kek` unless --guest-key.
        #[arg(long)]
        guest: bool,
        /// Vault key wrapping the guest DEK (implies --guest).
        #[arg(long, value_name = "KEY")]
        guest_key: Option<String>,
        /// Storage keying: platform, customer:KEY or double:KEY.
        #[arg(long, value_name = "MODE")]
        sse: Option<crate::store::disks::Sse>,
        /// Put the disk in a scope (it takes the scope's key).
        #[arg(long, value_name = "NAME")]
        scope: Option<String>,
        /// Refused: host encryption is fixed at init.
        #[arg(long, value_name = "on|off", value_parser = parse_on_off, hide = true)]
        host: Option<bool>,
        /// Fill the new disk from an image, re-encrypted under the disk's own
        /// DEKs (offline; run again to resume an interrupted fill).
        #[arg(long, value_name = "IMAGE")]
        from_image: Option<String>,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Re-encrypt a disk under new DEKs for the given layers, offline and
    /// resumably (run it again after an interruption to finish).
    Rekey {
        /// Store directory.
        store: PathBuf,
        /// Disk name.
        name: String,
        /// Layers to re-key: guest, host, storage (every storage pass),
        /// storage-cmk, storage-pmk.
        #[arg(long = "layer", value_name = "LAYER", required = true)]
        layers: Vec<String>,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Turn the guest layer on for a disk that holds data: an offline,
    /// resumable conversion ("needs a reboot").
    Encrypt {
        /// Store directory.
        store: PathBuf,
        /// Disk name.
        name: String,
        /// Add the guest layer (the only layer that can be added after init).
        #[arg(long, required = true)]
        guest: bool,
        /// Vault key wrapping the guest DEK.
        #[arg(long, value_name = "KEY", default_value = "guest-kek")]
        guest_key: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// List the disks of a store (no vault needed).
    List {
        /// Store directory.
        store: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a disk: layers, ciphers, keys and versions, scope, created,
    /// rotation due dates (with the vault), and what the real cloud would refuse.
    Show {
        /// Store directory.
        store: PathBuf,
        /// Disk name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

/// Snapshot commands.
#[derive(Debug, Subcommand)]
#[allow(missing_docs)]
pub enum SnapshotCommand {
    /// Take a snapshot of a disk: online through the running mount (writes
    /// held during the copy) or offline. The ciphertext is copied as it is
    /// (reflinked where the backing filesystem can) and keeps the disk's keys.
    Create {
        /// Store directory.
        store: PathBuf,
        /// Disk.
        disk: String,
        /// Snapshot name.
        name: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// List snapshots (no vault needed).
    List {
        /// Store directory.
        store: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot (offline).
    Delete {
        /// Store directory.
        store: PathBuf,
        /// Disk.
        disk: String,
        /// Snapshot name.
        name: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Bring a disk back to a snapshot, byte for byte and with the keys it
    /// had then (offline, resumable).
    Restore {
        /// Store directory.
        store: PathBuf,
        /// Disk.
        disk: String,
        /// Snapshot name.
        name: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

/// Image commands.
#[derive(Debug, Subcommand)]
#[allow(missing_docs)]
pub enum ImageCommand {
    /// Make an image from a disk (offline) or a snapshot (DISK@SNAPSHOT,
    /// also while mounted).
    Create {
        /// Store directory.
        store: PathBuf,
        /// Image name.
        name: String,
        /// DISK or DISK@SNAPSHOT.
        #[arg(long, value_name = "DISK[@SNAPSHOT]")]
        from: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// List images (no vault needed).
    List {
        /// Store directory.
        store: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an image.
    Delete {
        /// Store directory.
        store: PathBuf,
        /// Image name.
        name: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

/// Scope commands.
#[derive(Debug, Subcommand)]
#[allow(missing_docs)]
pub enum ScopeCommand {
    /// Create a scope bound to a customer key (created if missing; offline).
    Create {
        /// Store directory.
        store: PathBuf,
        /// Scope name.
        name: String,
        /// Customer key bound to the scope.
        #[arg(long, value_name = "KEY")]
        key: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// List the scopes of a store and their disks.
    List {
        /// Store directory.
        store: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A duration such as `90s`, `10m`, `1h30m`, `500ms` or plain seconds
/// (`45`); units ms, s, m, h, d.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 90s, 10m, 1h30m)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let one = match &rest[..unit_len] {
            "ms" => std::time::Duration::from_millis(1),
            "s" => std::time::Duration::from_secs(1),
            "m" | "min" => std::time::Duration::from_secs(60),
            "h" => std::time::Duration::from_secs(3600),
            "d" => std::time::Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        let n = u32::try_from(n).map_err(|_| bad())?;
        total = one
            .checked_mul(n)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected on or off, got {s}")),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init {
            store,
            preset,
            region,
            host,
            pmk_rotation_days,
            cmk,
            vault,
            kdf,
        } => init::run(
            &store,
            crate::store::InitOptions {
                preset,
                region,
                host,
                pmk_rotation_days,
                cmk,
            },
            &vault,
            &kdf,
        ),
        Command::Mount(args) => mount::run(args, cli.verbose),
        Command::Disk { command } => disk::run(command),
        Command::Scope { command } => disk::run_scope(command),
        Command::Umount { mountpoint } => mount::umount(&mountpoint),
        Command::Status { target, json } => mount::status(&target, json),
        Command::Snapshot { command } => snapshot::run(command),
        Command::Image { command } => snapshot::run_image(command),
        Command::Vault { command } => vault_cmd::run(command),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "strata", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            target,
            path,
            json,
            block,
            out,
            decrypt_to,
            vault,
        } => Ok(forensics::run_inspect(forensics::InspectArgs {
            target: &target,
            path: path.as_deref(),
            json,
            block,
            out,
            decrypt_to,
            vault: &vault,
        })),
        Command::Verify {
            store,
            json,
            repair,
            vault,
        } => Ok(forensics::run_verify(&store, json, repair, &vault)),
        Command::Scan {
            store,
            needles,
            json,
            include_config,
        } => Ok(forensics::run_scan(&store, &needles, json, include_config)),
    }
}

/// The man pages of the command and every subcommand, as (file name, roff).
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        let mut buf = Vec::new();
        let page = clap_mangen::Man::new(cmd.clone().name(name.clone()));
        if page.render(&mut buf).is_ok() {
            out.push((format!("{name}.1"), buf));
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                walk(sub, &name, out);
            }
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    walk(&cmd, "", &mut out);
    out
}

pub use crate::logging::Sink as LogSink;

/// Sets up logging to `sink`. Commands log warnings by default, the mount
/// daemon also what it does (mounted, unmounted, revocations); `-v` raises
/// the level one step, RUST_LOG overrides it. Logs never carry plaintext,
/// names or keys.
pub fn init_logging(
    verbose: u8,
    sink: LogSink<'_>,
    daemon: bool,
) -> anyhow::Result<crate::logging::Chosen> {
    use anyhow::Context;
    let level = match (verbose, daemon) {
        (0, false) => "warn",
        (0, true) | (1, false) => "info",
        _ => "debug",
    };
    let chosen = crate::logging::init(level, sink).with_context(|| match sink {
        LogSink::File(p) => format!("log file {}", p.display()),
        _ => "setting up logging".to_string(),
    })?;
    Ok(chosen)
}
