//! Shared harness for the integration tests: a fixture that makes a store,
//! a vault and a mountpoint in a private temporary directory by running the
//! real `strata` binary, and a guard that owns one real FUSE mount and always
//! unmounts it, whatever the test did.
//!
//! These tests need a kernel with FUSE: when `/dev/fuse` is missing they fail
//! loudly instead of passing without having run.

#![allow(dead_code)]

pub mod bao;

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Passphrase written to every fixture's passphrase file.
pub const PASSPHRASE: &str = "test-pass";
/// Every preset `strata init` accepts.
pub const PRESETS: [&str; 6] = ["general", "compliance", "os-policy", "full", "fleet", "max"];
/// The disks every store is created with.
pub const DISKS: [&str; 3] = ["os", "data", "temp"];
/// Plaintext block size.
pub const BLOCK: usize = 4096;
/// Backing file header length.
pub const HEADER_LEN: u64 = 128;
/// A stored block: ciphertext plus its 16-byte tag.
pub const STORED_BLOCK: u64 = 4096 + 16;

/// How long a mount may take to come up.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a daemon may take to exit after its mount is gone.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for any one-shot CLI command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a preset turns host encryption on (only these encrypt temp).
pub fn host_encryption(preset: &str) -> bool {
    matches!(preset, "full" | "max")
}

/// Fails the test when the kernel offers no FUSE device.
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: these tests mount real FUSE filesystems and cannot run \
         (load the fuse module or run in a container with --device /dev/fuse)"
    );
}

/// The `strata` binary under test.
pub fn strata_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// A `strata` command with the given arguments.
pub fn strata<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(strata_bin());
    cmd.args(args);
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a command to completion with a deadline, capturing its output. A
/// command still running at the deadline is killed and the test fails.
pub fn run(mut cmd: Command) -> Output {
    run_for(&mut cmd, COMMAND_TIMEOUT)
}

/// Like [`run`] with an explicit deadline.
pub fn run_for(cmd: &mut Command, limit: Duration) -> Output {
    let described = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    // Drain both pipes on threads so a chatty child never blocks on them.
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let status = match wait_deadline(&mut child, limit) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{described} did not finish within {limit:?}");
        }
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Waits for a child up to `limit`; `None` if it is still running.
pub fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Each thread of process `pid` with the kernel function it waits in and
/// its state: what a hung daemon was doing.
pub fn threads_of(pid: u32) -> String {
    let mut out = String::from("threads (name, wait channel, state):\n");
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |f: &str| {
            fs::read_to_string(dir.join(f))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let state = read("stat")
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').next().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!("  {} {} {}\n", read("comm"), read("wchan"), state));
    }
    out
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Stdout and stderr of a finished command, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts a command succeeded and returns its stdout as text.
pub fn assert_ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed: {}", describe(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `path` is a mount point of this process's mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    info.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|mp| unescape_mountinfo(mp) == want)
    })
}

/// The filesystem type of the newest mount at `path` ("fuse.strata",
/// "tmpfs"), if any.
pub fn top_mount_type(path: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.as_os_str().as_bytes();
    info.lines().rev().find_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        let point = head.split(' ').nth(4)?;
        (unescape_mountinfo(point) == want)
            .then(|| tail.split(' ').next().unwrap_or("").to_string())
    })
}

/// Whether the newest mount at `path` is a FUSE mount (a daemon's): what
/// a mount guard unmounts, leaving any other mount there alone.
pub fn fuse_mounted(path: &Path) -> bool {
    top_mount_type(path).is_some_and(|t| t.starts_with("fuse"))
}

fn unescape_mountinfo(field: &str) -> Vec<u8> {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Lazily detaches whatever is mounted at `path` (for dead FUSE mounts).
pub fn lazy_unmount(path: &Path) {
    let _ = Command::new("umount")
        .arg("-l")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A store, a vault, a passphrase file and a mountpoint inside a private
/// temporary directory, all removed when the fixture is dropped.
pub struct Fixture {
    /// The temporary directory holding everything below.
    pub root: tempfile::TempDir,
    /// The backing store directory.
    pub store: PathBuf,
    /// The vault file.
    pub vault: PathBuf,
    /// The passphrase file (holds [`PASSPHRASE`]).
    pub pass: PathBuf,
    /// The (initially empty) mountpoint directory.
    pub mnt: PathBuf,
    /// The preset the store was made with.
    pub preset: String,
    /// Stdout of `strata init` (holds the recovery key).
    pub init_stdout: String,
    mounts: AtomicUsize,
}

impl Fixture {
    /// Paths only: nothing is created but the passphrase file and the
    /// mountpoint directory.
    pub fn empty(preset: &str) -> Fixture {
        Self::empty_in(preset, None)
    }

    /// Like [`Fixture::empty`], with the store placed at `store` instead of
    /// inside the temporary directory (for stores on a special filesystem).
    pub fn empty_in(preset: &str, store: Option<PathBuf>) -> Fixture {
        require_fuse();
        let root = tempfile::Builder::new()
            .prefix("strata-it-")
            .tempdir()
            .expect("create temporary directory");
        let base = root.path().to_path_buf();
        let pass = base.join("passphrase");
        fs::write(&pass, format!("{PASSPHRASE}\n")).expect("write passphrase file");
        let mnt = base.join("mnt");
        fs::create_dir(&mnt).expect("create mountpoint");
        fs::create_dir(base.join("logs")).expect("create log directory");
        Fixture {
            store: store.unwrap_or_else(|| base.join("store")),
            vault: base.join("vault"),
            pass,
            mnt,
            preset: preset.to_string(),
            init_stdout: String::new(),
            root,
            mounts: AtomicUsize::new(0),
        }
    }

    /// A fixture whose store has been made with `strata init --preset`.
    pub fn new(preset: &str) -> Fixture {
        let mut f = Self::empty(preset);
        f.init_stdout = assert_ok(&f.init(), "strata init");
        f
    }

    /// A fixture whose store lives at `store` (for a store on tmpfs).
    pub fn new_with_store(preset: &str, store: PathBuf) -> Fixture {
        let mut f = Self::empty_in(preset, Some(store));
        f.init_stdout = assert_ok(&f.init(), "strata init");
        f
    }

    /// The temporary directory's path.
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// Runs `strata init` for this fixture's store, vault and preset.
    pub fn init(&self) -> Output {
        run(strata([
            OsStr::new("init"),
            self.store.as_os_str(),
            OsStr::new("--vault"),
            self.vault.as_os_str(),
            OsStr::new("--passphrase-file"),
            self.pass.as_os_str(),
            OsStr::new("--preset"),
            OsStr::new(&self.preset),
            OsStr::new("--kdf-memory"),
            OsStr::new("1024"),
            OsStr::new("--kdf-iterations"),
            OsStr::new("1"),
        ]))
    }

    /// Whether this fixture's preset turns host encryption on.
    pub fn host_encryption(&self) -> bool {
        host_encryption(&self.preset)
    }

    /// A disk's directory inside the mount.
    pub fn disk(&self, disk: &str) -> PathBuf {
        self.mnt.join(disk)
    }

    /// A disk's encrypted tree inside the backing store.
    pub fn backing(&self, disk: &str) -> PathBuf {
        self.store.join("disks").join(disk)
    }

    /// The store's config file.
    pub fn config(&self) -> PathBuf {
        self.store.join("strata.conf")
    }

    /// `--vault V --passphrase-file P` for this fixture.
    pub fn vault_args(&self) -> [&OsStr; 4] {
        [
            OsStr::new("--vault"),
            self.vault.as_os_str(),
            OsStr::new("--passphrase-file"),
            self.pass.as_os_str(),
        ]
    }

    /// Runs `strata ARGS…`, followed by the vault arguments when
    /// `with_vault`.
    pub fn cli(&self, args: &[&str], with_vault: bool) -> Output {
        let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        if with_vault {
            all.extend(self.vault_args());
        }
        run(strata(all))
    }

    /// `strata mount STORE MNT --vault V --passphrase-file P -f` plus `extra`.
    pub fn mount_command(&self, extra: &[&str]) -> Command {
        let mut cmd = strata([
            OsStr::new("mount"),
            self.store.as_os_str(),
            self.mnt.as_os_str(),
            OsStr::new("--vault"),
            self.vault.as_os_str(),
            OsStr::new("--passphrase-file"),
            self.pass.as_os_str(),
            OsStr::new("-f"),
        ]);
        cmd.args(extra);
        cmd
    }

    /// Mounts the store in the foreground and waits until it serves.
    pub fn mount(&self) -> MountGuard {
        self.mount_with(&[])
    }

    /// Mounts with extra `strata mount` arguments (e.g. `--ro`).
    pub fn mount_with(&self, extra: &[&str]) -> MountGuard {
        self.unwrap_mount(self.try_mount_cmd(self.mount_command(extra)))
    }

    /// Mounts with the daemon run under `wrapper` (a program and its
    /// arguments, e.g. a tracer), which must exit when the daemon does.
    pub fn mount_under(&self, wrapper: &[&OsStr]) -> MountGuard {
        let plain = self.mount_command(&[]);
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(plain.get_program())
            .args(plain.get_args())
            .stdin(Stdio::null());
        self.unwrap_mount(self.try_mount_cmd(cmd))
    }

    /// Like [`Fixture::mount_with`], for a mount that may be refused: the
    /// daemon's log when it exits (or fails to serve in time) instead.
    pub fn try_mount_with(&self, extra: &[&str]) -> Result<MountGuard, String> {
        self.try_mount_cmd(self.mount_command(extra))
    }

    fn unwrap_mount(&self, r: Result<MountGuard, String>) -> MountGuard {
        match r {
            Ok(guard) => guard,
            Err(log) => panic!("strata mount did not come up; log:\n{log}"),
        }
    }

    fn try_mount_cmd(&self, mut cmd: Command) -> Result<MountGuard, String> {
        let n = self.mounts.fetch_add(1, Ordering::SeqCst);
        let log = self.path().join("logs").join(format!("mount-{n}.log"));
        let file = File::create(&log).expect("create daemon log");
        let out = file.try_clone().expect("clone log handle");
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(file));
        let child = cmd.spawn().expect("spawn strata mount");
        let mut guard = MountGuard {
            child: Some(child),
            mnt: self.mnt.clone(),
            log,
        };
        let probe = self.mnt.join("os");
        let mut exited = None;
        let up = poll_until(MOUNT_TIMEOUT, || {
            if let Some(child) = guard.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
            }
            probe.is_dir()
        });
        if let Some(status) = exited {
            guard.child = None;
            return Err(format!("exited with {status}\n{}", guard.log()));
        }
        if !up {
            let log = guard.log();
            drop(guard);
            return Err(format!(
                "did not come up within {MOUNT_TIMEOUT:?} at {}\n{log}",
                self.mnt.display()
            ));
        }
        Ok(guard)
    }

    /// Every daemon log of this fixture, concatenated in mount order.
    pub fn all_logs(&self) -> String {
        let n = self.mounts.load(Ordering::SeqCst);
        (0..n)
            .map(|i| {
                fs::read_to_string(self.path().join("logs").join(format!("mount-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One running `strata mount -f` daemon and its mount. Dropping it unmounts
/// with `strata umount`, waits for the daemon, and falls back to killing it
/// and detaching the mount lazily, so no path out of a test leaves a mount.
pub struct MountGuard {
    child: Option<Child>,
    mnt: PathBuf,
    log: PathBuf,
}

impl MountGuard {
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Path of the daemon's log (its stderr and stdout).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts with `strata umount` and asserts both that command and the
    /// foreground daemon exit 0 and that the mount is gone.
    pub fn unmount(mut self) {
        let out = run(strata([OsStr::new("umount"), self.mnt.as_os_str()]));
        let mut child = self.child.take().expect("daemon running");
        let status = wait_deadline(&mut child, EXIT_TIMEOUT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let still_mounted = fuse_mounted(&self.mnt);
        if still_mounted || !out.status.success() {
            lazy_unmount(&self.mnt);
        }
        assert!(
            out.status.success(),
            "strata umount failed: {}\ndaemon log:\n{}",
            describe(&out),
            self.log()
        );
        assert!(
            status.is_some(),
            "daemon did not exit within {EXIT_TIMEOUT:?} of strata umount; log:\n{}",
            self.log()
        );
        let status = status.expect("checked above");
        assert!(
            status.success(),
            "daemon exited with {status} after unmount; log:\n{}",
            self.log()
        );
        assert!(
            !still_mounted,
            "{} still mounted after strata umount",
            self.mnt.display()
        );
    }

    /// Kills the daemon with SIGKILL (a crash), reaps it and lazily detaches
    /// the dead mount.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("daemon running");
        let _ = child.kill();
        let _ = child.wait();
        lazy_unmount(&self.mnt);
        assert!(
            poll_until(EXIT_TIMEOUT, || !fuse_mounted(&self.mnt)),
            "dead mount at {} could not be detached",
            self.mnt.display()
        );
    }

    /// Sends a signal to the daemon and waits for it to exit; returns its
    /// exit status (None if it had not exited within the deadline), whether
    /// it left its mount behind (which is then detached) and a report for a
    /// failure: the daemon's log and, if it had not exited, where each of
    /// its threads waited.
    pub fn signal_and_wait(self, signal: i32) -> (Option<ExitStatus>, bool, String) {
        self.signal(signal);
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.pid()).expect("pid fits i32");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits up to `limit` for the daemon to exit, then as
    /// [`MountGuard::signal_and_wait`].
    pub fn wait_exit(mut self, limit: Duration) -> (Option<ExitStatus>, bool, String) {
        let mut child = self.child.take().expect("daemon running");
        let status = wait_deadline(&mut child, limit);
        let mut report = String::new();
        if status.is_none() {
            report = threads_of(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
        let left_mounted = fuse_mounted(&self.mnt);
        if left_mounted {
            lazy_unmount(&self.mnt);
        }
        report.push_str("daemon log:\n");
        report.push_str(&self.log());
        (status, left_mounted, report)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            if fuse_mounted(&self.mnt) {
                lazy_unmount(&self.mnt);
            }
            return;
        };
        let mut umount = strata([OsStr::new("umount"), self.mnt.as_os_str()]);
        umount.stdout(Stdio::null()).stderr(Stdio::null());
        if let Ok(mut u) = umount.spawn() {
            if wait_deadline(&mut u, EXIT_TIMEOUT).is_none() {
                let _ = u.kill();
                let _ = u.wait();
            }
        }
        if wait_deadline(&mut child, EXIT_TIMEOUT).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if fuse_mounted(&self.mnt) {
            lazy_unmount(&self.mnt);
        }
    }
}

/// A tmpfs of a fixed size mounted on a directory, unmounted on drop.
pub struct Tmpfs {
    /// Where the tmpfs is mounted.
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "16m") on `dir`, creating `dir`.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("create tmpfs mountpoint");
        let out = run_for(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0700"))
                .arg("tmpfs")
                .arg(dir),
            COMMAND_TIMEOUT,
        );
        assert_ok(&out, "mount -t tmpfs");
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            lazy_unmount(&self.dir);
        }
    }
}

/// A small deterministic generator (SplitMix64): reproducible data and
/// offsets without a dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// `len` bytes of a pattern that differs at every offset and between seeds,
/// so a misplaced or stale block never compares equal.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// The errno of an I/O error (panics if it has none).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("error without errno: {e}"))
}

/// Asserts `r` failed with one of `expected` errnos.
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, expected: &[i32], what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected errno {expected:?}, got success {v:?}"),
        Err(e) => assert!(
            expected.contains(&errno(&e)),
            "{what}: expected errno {expected:?}, got {e} ({:?})",
            e.raw_os_error()
        ),
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// lsetxattr(2) (rustix: the same call on every system strata runs on).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::lsetxattr(
        path,
        name,
        value,
        rustix::fs::XattrFlags::empty(),
    )?)
}

/// lgetxattr(2), sized by a first call.
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let len = rustix::fs::lgetxattr_query(path, name)?;
    let mut buf = vec![0u8; len.max(1)];
    let got = rustix::fs::lgetxattr(path, name, &mut buf[..])?;
    buf.truncate(got);
    Ok(buf)
}

/// llistxattr(2), split into names.
pub fn list_xattr(path: &Path) -> io::Result<Vec<String>> {
    let len = rustix::fs::llistxattr_query(path)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; len];
    let got = rustix::fs::llistxattr(path, &mut buf[..])?;
    buf.truncate(got);
    Ok(buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// lremovexattr(2).
pub fn remove_xattr(path: &Path, name: &str) -> io::Result<()> {
    Ok(rustix::fs::lremovexattr(path, name)?)
}

/// mkfifo(3).
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let p = cpath(path);
    // SAFETY: valid NUL-terminated path.
    cvt(unsafe { libc::mkfifo(p.as_ptr(), mode as libc::mode_t) }).map(|_| ())
}

/// statvfs(3).
pub fn statvfs(path: &Path) -> io::Result<rustix::fs::StatVfs> {
    Ok(rustix::fs::statvfs(path)?)
}

/// Every regular file, directory and symlink below `dir`, recursively
/// (not following symlinks), `dir` itself excluded.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for entry in rd.flatten() {
            let p = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            out.push(p.clone());
            if is_dir {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Names in a directory, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Backing files of a disk that are user files (strata's own names begin
/// with `.`), recursively.
pub fn backing_user_files(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.as_bytes().starts_with(b"."))
                && fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
        })
        .collect()
}

/// Size in bytes a file occupies on its filesystem.
pub fn allocated(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

/// Counts non-overlapping occurrences of `needle` in `hay`.
pub fn count_occurrences(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Defines one `#[test]` per preset for each listed test body: for a body
/// `fn name(preset: &str)` in the including file, it generates
/// `general::name`, `compliance::name`, … each calling `name("<preset>")`.
#[macro_export]
macro_rules! per_preset {
    ($($test:ident),* $(,)?) => {
        mod general { $( #[test] fn $test() { super::$test("general") } )* }
        mod compliance { $( #[test] fn $test() { super::$test("compliance") } )* }
        mod os_policy { $( #[test] fn $test() { super::$test("os-policy") } )* }
        mod full { $( #[test] fn $test() { super::$test("full") } )* }
        mod fleet { $( #[test] fn $test() { super::$test("fleet") } )* }
        mod max { $( #[test] fn $test() { super::$test("max") } )* }
    };
}

/// What one path of a tree holds, for whole-tree comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file and its contents.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link and its target.
    Symlink(PathBuf),
    /// A named pipe.
    Fifo,
}

/// Every path below `dir` (relative to it) with what it holds.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Node> {
    use std::os::unix::fs::FileTypeExt;
    walk(dir)
        .into_iter()
        .map(|p| {
            let meta =
                fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let t = meta.file_type();
            let node = if t.is_dir() {
                Node::Dir
            } else if t.is_symlink() {
                Node::Symlink(fs::read_link(&p).expect("readlink"))
            } else if t.is_fifo() {
                Node::Fifo
            } else {
                Node::File(fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
            };
            (p.strip_prefix(dir).expect("below dir").to_path_buf(), node)
        })
        .collect()
}

/// Reads exactly `len` bytes at `off` (fewer only at end of file).
pub fn read_at(file: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = file.read_at(&mut buf[done..], off + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

/// Writes all of `data` at `off`.
pub fn write_at(file: &File, off: u64, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(data, off)
}

/// Opens (creating) a file for reading and writing.
pub fn open_rw(path: &Path) -> File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Asserts two byte strings are equal, reporting the first difference
/// instead of dumping both.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want.iter())
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: contents differ (got {} bytes, want {}); first difference at byte {first} \
         (block {}, offset {} in block): got {:?}, want {:?}",
        got.len(),
        want.len(),
        first / BLOCK,
        first % BLOCK,
        got.get(first..(first + 16).min(got.len())),
        want.get(first..(first + 16).min(want.len())),
    );
}

/// The process umask, read without changing it.
pub fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).expect("octal umask"))
        .expect("Umask line")
}
