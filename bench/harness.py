#!/usr/bin/env python3
"""strata against its peers, in one interleaved run.

Mounts strata (presets general and max), gocryptfs, securefs (lite format),
cryfs, bindfs (the FUSE floor) and a plain directory side by side, runs the
same workloads on each, repetition by repetition with the order of the
filesystems rotated so that drift hits all alike, and writes medians and
strata/peer ratios as Markdown and CSV under bench/results/, and the ratio
tables as SVG bar charts (bench/plot.py).

Run through bench/run.sh, which installs the peers and builds strata.
`--plot CSV` only redraws the charts of an earlier run from its CSV.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import plot

PASS = "bench-passphrase"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sh(cmd, check=True, env=None, input=None, timeout=None):
    """Runs a command; returns its stdout."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, input=input, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return r.stdout


def journal_missing(path):
    """Whether `path` is on an ext4 without a journal. There ext4 skips, at
    every inode it allocates, each inode deleted in the last 30 to 300
    seconds (ialloc.c, recently_deleted): a create right after another
    filesystem's delete of 10k files ran 4.4x slower here than a create
    after none, so the meta rows measured who ran before whom."""
    dev = os.stat(path).st_dev
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        major, minor = (int(x) for x in fields[2].split(":"))
        fstype = fields[fields.index("-") + 1]
        if os.makedev(major, minor) == dev and fstype == "ext4":
            name = os.path.basename(fields[fields.index("-") + 2])
            try:
                with open(f"/sys/fs/ext4/{name}/journal_task") as f:
                    return f.read().strip() == "<none>"
            except OSError:
                return False
    return False


class JournaledExt4:
    """A journaled ext4 (mkfs.ext4's defaults, as most systems have) in a
    sparse image on a loop device with direct I/O (no second copy of its
    pages in the page cache, so dropping caches makes reads cold)."""

    def __init__(self, base, size_gib):
        self.image = os.path.join(base, "ext4.img")
        self.mnt = os.path.join(base, "fs")
        with open(self.image, "wb") as f:
            f.truncate(size_gib << 30)
        # Inode tables and journal written now: left lazy, the kernel
        # zeroes them in the background during the first minutes of the run.
        sh(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", self.image])
        self.dev = sh(["losetup", "--direct-io=on", "--find", "--show", self.image]).strip()
        os.makedirs(self.mnt)
        try:
            sh(["mount", self.dev, self.mnt])
        except Exception:
            sh(["losetup", "-d", self.dev], check=False)
            raise

    def close(self):
        """Unmounts and frees the image; False (leaving both) if the
        unmount failed."""
        if subprocess.run(["umount", self.mnt], capture_output=True).returncode != 0:
            print(f"could not unmount {self.mnt}: left mounted on {self.dev}", file=sys.stderr)
            return False
        sh(["losetup", "-d", self.dev], check=False)
        try:
            os.unlink(self.image)
        except OSError as e:
            print(f"could not remove {self.image}: {e}", file=sys.stderr)
        return True


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass  # not root: caches stay warm (noted in the report)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def wait_mounted(path, limit=30):
    end = time.time() + limit
    while time.time() < end:
        if is_mounted(path):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not mount within {limit} s")


def unmount(path):
    for attempt in range(50):
        if not is_mounted(path):
            return
        r = subprocess.run(["umount", path], capture_output=True)
        if r.returncode == 0:
            break
        time.sleep(0.2)
    end = time.time() + 20
    while is_mounted(path) and time.time() < end:
        time.sleep(0.05)
    if is_mounted(path):
        subprocess.run(["umount", "-l", path])


class Fs:
    """One filesystem under test: set up once, mounted per workload."""

    def __init__(self, name, base):
        self.name = name
        self.base = os.path.join(base, name)
        self.mnt = os.path.join(self.base, "mnt")
        os.makedirs(self.mnt, exist_ok=True)
        self.passfile = os.path.join(self.base, "pass")
        with open(self.passfile, "w") as f:
            f.write(PASS + "\n")

    def setup(self):
        pass

    def mount(self):
        pass

    def umount(self):
        unmount(self.mnt)

    def work(self):
        return os.path.join(self.mnt, "data")

    def temp(self):
        return os.path.join(self.mnt, "temp")

    def prepare_dirs(self):
        os.makedirs(self.work(), exist_ok=True)
        os.makedirs(self.temp(), exist_ok=True)

    def daemon_rss_peak(self):
        return None


class Plain(Fs):
    def mount(self):
        self.prepare_dirs()

    def umount(self):
        pass

    def work(self):
        return os.path.join(self.base, "plain", "data")

    def temp(self):
        return os.path.join(self.base, "plain", "temp")


class Bindfs(Fs):
    def setup(self):
        os.makedirs(os.path.join(self.base, "src"), exist_ok=True)

    def mount(self):
        sh(["bindfs", "--multithreaded", "-o", "big_writes", os.path.join(self.base, "src"), self.mnt])
        wait_mounted(self.mnt)
        self.prepare_dirs()


class Gocryptfs(Fs):
    def setup(self):
        c = os.path.join(self.base, "cipher")
        os.makedirs(c, exist_ok=True)
        sh(["gocryptfs", "-init", "-q", "-scryptn", "10", "-passfile", self.passfile, c])

    def mount(self):
        sh(["gocryptfs", "-q", "-passfile", self.passfile, os.path.join(self.base, "cipher"), self.mnt])
        wait_mounted(self.mnt)
        self.prepare_dirs()


class Securefs(Fs):
    def setup(self):
        c = os.path.join(self.base, "cipher")
        os.makedirs(c, exist_ok=True)
        sh(["securefs", "create", "--format", "4", "--pbkdf", "pkcs5-pbkdf2-hmac-sha256", "-r", "1000", "--pass", PASS, c])

    def mount(self):
        sh(["securefs", "mount", "-b", "--pass", PASS, "--log", os.path.join(self.base, "log"),
            os.path.join(self.base, "cipher"), self.mnt])
        wait_mounted(self.mnt)
        self.prepare_dirs()


class Cryfs(Fs):
    ENV = dict(os.environ, CRYFS_FRONTEND="noninteractive", CRYFS_NO_UPDATE_CHECK="true")

    def setup(self):
        os.makedirs(os.path.join(self.base, "cipher"), exist_ok=True)

    def mount(self):
        sh(["cryfs", "--cipher", "aes-256-gcm", "--blocksize", "16384",
            "--config", os.path.join(self.base, "cryfs.config"),
            os.path.join(self.base, "cipher"), self.mnt],
           env=self.ENV, input=PASS + "\n")
        wait_mounted(self.mnt)
        self.prepare_dirs()


class Strata(Fs):
    def __init__(self, name, base, preset, binary, cache_size):
        super().__init__(name, base)
        self.preset = preset
        self.bin = binary
        self.cache_size = cache_size
        self.store = os.path.join(self.base, "store")
        self.vault = os.path.join(self.base, "vault")
        self.peak = 0
        self.peaks = {}  # workload -> peak resident bytes of its daemons
        self.workload = None

    def setup(self):
        sh([self.bin, "init", self.store, "--vault", self.vault, "--passphrase-file", self.passfile,
            "--preset", self.preset])

    def mount(self):
        sh([self.bin, "mount", self.store, self.mnt, "--vault", self.vault, "--passphrase-file",
            self.passfile, "--log-file", os.path.join(self.base, "log"),
            "--cache-size", str(self.cache_size)])
        wait_mounted(self.mnt)

    def pid(self):
        out = sh(["pgrep", "-f", f"{self.bin} mount {self.store} "], check=False).split()
        return int(out[0]) if out else None

    def umount(self):
        pid = self.pid()
        if pid:
            try:
                with open(f"/proc/{pid}/status") as f:
                    m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
                    if m:
                        rss = int(m.group(1)) * 1024
                        self.peak = max(self.peak, rss)
                        if self.workload:
                            self.peaks[self.workload] = max(self.peaks.get(self.workload, 0), rss)
            except OSError:
                pass
        sh([self.bin, "umount", self.mnt], check=False)
        unmount(self.mnt)

    def daemon_rss_peak(self):
        return self.peak


# ---------------------------------------------------------------- workloads
# Each returns {metric: value}. METRICS says which direction is better for
# the main table; SCALE metrics (per-item costs as the work grows) have
# their own table and chart.

METRICS = {
    "seq write fio MB/s": "high",
    "seq read fio MB/s": "high",
    "seq write dd MB/s": "high",
    "seq read dd MB/s": "high",
    "rand read 1 job IOPS": "high",
    "rand read 2 jobs IOPS": "high",
    "rand write 1 job IOPS": "high",
    "rand write 2 jobs IOPS": "high",
    "create 10k files s": "low",
    "stat 10k files s": "low",
    "delete 10k files s": "low",
    "sqlite insert DELETE s": "low",
    "sqlite insert WAL s": "low",
    "sqlite full scan s": "low",
    "sqlite index build s": "low",
    "append 512 B + fsync ops/s": "high",
    "append 4 KiB + fsync ops/s": "high",
}

# Scaling metrics are named "scale: <what> <count>"; all are per-item costs
# (lower is better) except the MB/s and IOPS ones.
SCALE = "scale: "


def scale_metrics(q):
    out = {}
    for n in q.scale_counts:
        for layout in ("flat", "tree"):
            for op in ("create", "stat", "delete"):
                out[f"{SCALE}{op} {layout} {count_label(n)} µs/file"] = "low"
    for n in q.scale_counts:
        out[f"{SCALE}ls -l {count_label(n)} µs/entry"] = "low"
    for size in big_sizes(q):
        out[f"{SCALE}seq write {size} MB/s"] = "high"
        out[f"{SCALE}seq read {size} MB/s"] = "high"
    out[f"{SCALE}rand read 4k over {rand_big_size(q)} µs/read"] = "low"
    return out


def count_label(n):
    return f"{n // 1000}k" if n % 1000 == 0 and n >= 1000 else str(n)


def big_sizes(q):
    return ["256 MiB", "1 GiB"] if q.quick else ["1 GiB", "8 GiB"]


def rand_big_size(q):
    return "256 MiB" if q.quick else "1 GiB"


def mib(size):
    n, unit = size.split()
    return int(n) * (1024 if unit == "GiB" else 1)


def remount_cold(fs):
    fs.umount()
    drop_caches()
    fs.mount()


def fio(args):
    out = sh(["fio", "--output-format=json", "--ioengine=psync", "--group_reporting"] + args, timeout=1800)
    return json.loads(out[out.index("{"):])["jobs"][0]


def dd_write(path, size_mib):
    """Writes size_mib MiB in 1 MiB requests, fsync at the end; MB/s."""
    t0 = time.perf_counter()
    sh(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size_mib}", "conv=fsync", "status=none"],
       timeout=3600)
    return size_mib * 2**20 / (time.perf_counter() - t0) / 1e6


def dd_read(path, size_mib):
    t0 = time.perf_counter()
    sh(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"], timeout=3600)
    return size_mib * 2**20 / (time.perf_counter() - t0) / 1e6


def w_seq(fs, q):
    path = os.path.join(fs.work(), "seq")
    size = "256M" if q.quick else "1G"
    j = fio(["--name=w", f"--filename={path}", "--rw=write", "--bs=1M", f"--size={size}", "--end_fsync=1"])
    write = j["write"]["bw_bytes"] / 1e6
    remount_cold(fs)
    j = fio(["--name=r", f"--filename={path}", "--rw=read", "--bs=1M", f"--size={size}"])
    read = j["read"]["bw_bytes"] / 1e6
    os.unlink(path)
    return {"seq write fio MB/s": write, "seq read fio MB/s": read}


def w_dd(fs, q):
    """The same sizes as `seq`, through dd with 1 MiB requests."""
    path = os.path.join(fs.work(), "seq-dd")
    size = 256 if q.quick else 1024
    write = dd_write(path, size)
    remount_cold(fs)
    read = dd_read(path, size)
    os.unlink(path)
    return {"seq write dd MB/s": write, "seq read dd MB/s": read}


def w_rand(fs, q):
    path = os.path.join(fs.work(), "rand")
    size = "64M" if q.quick else "256M"
    rt = "2" if q.quick else "5"
    fio(["--name=fill", f"--filename={path}", "--rw=write", "--bs=1M", f"--size={size}", "--end_fsync=1"])
    out = {}
    for jobs in (1, 2):
        remount_cold(fs)
        j = fio(["--name=rr", f"--filename={path}", "--rw=randread", "--bs=4k", f"--size={size}",
                 f"--numjobs={jobs}", "--time_based", f"--runtime={rt}"])
        out[f"rand read {jobs} job{'s' if jobs > 1 else ''} IOPS"] = j["read"]["iops"]
    for jobs in (1, 2):
        j = fio(["--name=rw", f"--filename={path}", "--rw=randwrite", "--bs=4k", f"--size={size}",
                 f"--numjobs={jobs}", "--time_based", f"--runtime={rt}", "--end_fsync=1"])
        out[f"rand write {jobs} job{'s' if jobs > 1 else ''} IOPS"] = j["write"]["iops"]
    os.unlink(path)
    return out


def tree_paths(top, n, layout):
    """The directories and file paths of n files: all in `top` (flat), or
    100 per directory (tree)."""
    if layout == "flat":
        return [top], [os.path.join(top, f"f{i:06}") for i in range(n)]
    dirs = [os.path.join(top, f"d{d:04}") for d in range((n + 99) // 100)]
    return [top] + dirs, [os.path.join(dirs[i // 100], f"f{i % 100:03}") for i in range(n)]


def create_files(dirs, files, body):
    t0 = time.perf_counter()
    for d in dirs:
        os.mkdir(d)
    for p in files:
        with open(p, "wb") as f:
            f.write(body)
    return time.perf_counter() - t0


def stat_files(files):
    t0 = time.perf_counter()
    for p in files:
        os.stat(p)
    return time.perf_counter() - t0


def delete_files(dirs, files):
    t0 = time.perf_counter()
    for p in files:
        os.unlink(p)
    for d in reversed(dirs):
        os.rmdir(d)
    return time.perf_counter() - t0


def w_meta(fs, q):
    n = 1000 if q.quick else 10000
    dirs, files = tree_paths(os.path.join(fs.work(), "tree"), n, "tree")
    create = create_files(dirs, files, os.urandom(4096))
    remount_cold(fs)
    stat = stat_files(files)
    delete = delete_files(dirs, files)
    return {"create 10k files s": create, "stat 10k files s": stat, "delete 10k files s": delete}


def w_scale(fs, q):
    """Create, stat (cold) and delete of 1k, 10k and 100k files in one
    directory and in a tree of 100 files per directory, and `ls -l` (cold)
    of each flat directory: per-item costs."""
    out = {}
    body = os.urandom(4096)
    for n in q.scale_counts:
        label = count_label(n)
        for layout in ("flat", "tree"):
            dirs, files = tree_paths(os.path.join(fs.work(), f"scale-{layout}"), n, layout)
            out[f"{SCALE}create {layout} {label} µs/file"] = create_files(dirs, files, body) / n * 1e6
            if layout == "flat":
                remount_cold(fs)
                t0 = time.perf_counter()
                sh(["ls", "-l", "--color=never", dirs[0]], timeout=3600)
                out[f"{SCALE}ls -l {label} µs/entry"] = (time.perf_counter() - t0) / n * 1e6
            remount_cold(fs)
            out[f"{SCALE}stat {layout} {label} µs/file"] = stat_files(files) / n * 1e6
            out[f"{SCALE}delete {layout} {label} µs/file"] = delete_files(dirs, files) / n * 1e6
    return out


def w_big(fs, q):
    """Sequential write and read (cold) of 1 and 8 GiB with dd, and 4 KiB
    random reads over a file larger than strata's block cache."""
    out = {}
    for size in big_sizes(q):
        free = shutil.disk_usage(fs.work()).free
        if free < (2 * mib(size) + 2048) * 2**20:
            print(f"{fs.name}: skipping {size}: only {free / 2**30:.1f} GiB free", flush=True)
            continue
        path = os.path.join(fs.work(), "big")
        out[f"{SCALE}seq write {size} MB/s"] = dd_write(path, mib(size))
        remount_cold(fs)
        out[f"{SCALE}seq read {size} MB/s"] = dd_read(path, mib(size))
        os.unlink(path)
    size = rand_big_size(q)
    path = os.path.join(fs.work(), "rand-big")
    fio(["--name=fill", f"--filename={path}", "--rw=write", "--bs=1M", f"--size={mib(size)}M", "--end_fsync=1"])
    remount_cold(fs)
    j = fio(["--name=rr", f"--filename={path}", "--rw=randread", "--bs=4k", f"--size={mib(size)}M",
             "--time_based", f"--runtime={2 if q.quick else 5}"])
    out[f"{SCALE}rand read 4k over {size} µs/read"] = 1e6 / j["read"]["iops"]
    os.unlink(path)
    return out


SQLITE_CHILD = r"""
import os, random, sqlite3, sys, time, json
work, rows = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
out = {}
def fill(mode):
    db = os.path.join(work, f"bench-{mode}.db")
    c = sqlite3.connect(db, isolation_level=None)
    c.execute(f"PRAGMA journal_mode={mode}")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT)")
    t0 = time.perf_counter()
    for start in range(0, rows, 1000):
        c.execute("BEGIN")
        c.executemany("INSERT INTO t(k, v) VALUES (?, ?)",
                      [(rnd.randrange(1 << 40), "%032x" % rnd.getrandbits(128) * 3) for _ in range(1000)])
        c.execute("COMMIT")
    return c, db, time.perf_counter() - t0
c, db, out["sqlite insert DELETE s"] = fill("DELETE")
c.close(); os.unlink(db)
c, db, out["sqlite insert WAL s"] = fill("WAL")
# The scan is served from the page cache (strata's and gocryptfs' daemons
# made a few dozen read calls in eight scans of 25 MB) and takes some 50 ms
# of SQLite's own CPU, as long as on ext4: one scan measures the machine's
# load of that moment, so the row is the median of five.
scans = []
for _ in range(5):
    t0 = time.perf_counter()
    c.execute("SELECT count(*), sum(length(v)), max(k) FROM t").fetchone()
    scans.append(time.perf_counter() - t0)
out["sqlite full scan s"] = sorted(scans)[2]
c.execute("PRAGMA temp_store=FILE")
c.execute("PRAGMA cache_size=-2000")
t0 = time.perf_counter()
c.execute("CREATE INDEX t_v ON t(v)")
out["sqlite index build s"] = time.perf_counter() - t0
c.close()
for suffix in ("", "-wal", "-shm"):
    try: os.unlink(db + suffix)
    except FileNotFoundError: pass
print(json.dumps(out))
"""


def w_sqlite(fs, q):
    rows = 20000 if q.quick else 200000
    env = dict(os.environ, SQLITE_TMPDIR=fs.temp(), TMPDIR=fs.temp())
    out = sh([sys.executable, "-c", SQLITE_CHILD, fs.work(), str(rows)], env=env, timeout=1800)
    return json.loads(out)


def w_append(fs, q):
    out = {}
    span = 1.0 if q.quick else 3.0
    for size, key in ((512, "append 512 B + fsync ops/s"), (4096, "append 4 KiB + fsync ops/s")):
        path = os.path.join(fs.work(), f"append-{size}")
        buf = os.urandom(size)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < span:
            os.write(fd, buf)
            os.fsync(fd)
            n += 1
        out[key] = n / (time.perf_counter() - t0)
        os.close(fd)
        os.unlink(path)
    return out


# The default set; "scale" and "big" (long: 100k files, 8 GiB) run when
# named in --workloads.
WORKLOADS = [("seq", w_seq), ("dd", w_dd), ("rand", w_rand), ("meta", w_meta), ("sqlite", w_sqlite),
             ("append", w_append), ("scale", w_scale), ("big", w_big)]
DEFAULT_WORKLOADS = ["seq", "dd", "rand", "meta", "sqlite", "append"]


# ---------------------------------------------------------------- report

def version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "not found"


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "strata": None,
        "gocryptfs": version(["gocryptfs", "-version"]),
        "securefs": version(["securefs", "version"]),
        "cryfs": version(["cryfs", "--version"]),
        "bindfs": version(["bindfs", "--version"]),
        "fio": version(["fio", "--version"]),
        "sqlite": version([sys.executable, "-c", "import sqlite3; print(sqlite3.sqlite_version)"]),
    }


def fmt(v):
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def ratio_cell(a, b, better):
    if a is None or b is None or a == 0 or b == 0:
        return "–"
    return f"{(a / b) if better == 'high' else (b / a):.2f}"


def report(samples, names, info, q, out_dir, extra, memory, directions):
    os.makedirs(out_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d")
    med = {(n, m): statistics.median(v) for (n, m), v in samples.items() if v}
    stratas = [n for n in names if n.startswith("strata") and "@" not in n]
    baselines = [n for n in names if "@" in n]
    peers = [n for n in names if not n.startswith("strata")]
    core = [m for m in METRICS if any((n, m) in med for n in names)]
    scale = [m for m in directions if m.startswith(SCALE) and any((n, m) in med for n in names)]
    lines = [f"# strata benchmarks, {stamp}", "",
             f"Machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}. "
             f"Backing store: {info.get('backing', 'ext4')}. Medians of {q.reps} interleaved repetitions"
             + (" (quick mode: reduced sizes)" if q.quick else "") + ".", "",
             "Versions: " + "; ".join(f"{k} {v}" for k, v in info.items()
                                    if k not in ("cpu", "cores", "kernel", "backing")), ""]
    if core:
        lines += ["## Medians", "",
                  "| metric | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for m in core:
            row = [fmt(med[(n, m)]) if (n, m) in med else "–" for n in names]
            lines.append(f"| {m} ({'higher' if METRICS[m] == 'high' else 'lower'} is better) | " + " | ".join(row) + " |")
        for s in stratas:
            lines += ["", f"## {s} against each peer (speed ratio: above 1.00 means {s} is faster)", "",
                      "| metric | " + " | ".join(peers) + " |", "|---|" + "---:|" * len(peers)]
            for m in core:
                cells = [ratio_cell(med.get((s, m)), med.get((p, m)), METRICS[m]) for p in peers]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for b in baselines:
        s = b.split("@")[0]
        if s not in names:
            continue
        lines += ["", f"## {s} against {b} (speed ratio: above 1.00 means {s} is faster)", "",
                  "| metric | ratio |", "|---|---:|"]
        for m in core + scale:
            lines.append(f"| {m} | {ratio_cell(med.get((s, m)), med.get((b, m)), directions[m])} |")
    if scale:
        lines += ["", "## Scaling: per-item cost as the work grows", "",
                  "µs per file (create, stat, delete: in one directory, or 100 files per "
                  "directory; stat and `ls -l` cold, after a remount with caches dropped), "
                  "µs per entry (`ls -l`), MB/s (dd, 1 MiB requests) and µs per 4 KiB random "
                  "read over a file larger than strata's block cache.", "",
                  "| metric | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for m in scale:
            row = [fmt(med[(n, m)]) if (n, m) in med else "–" for n in names]
            lines.append(f"| {m[len(SCALE):]} | " + " | ".join(row) + " |")
        for s in stratas:
            lines += ["", f"### {s} against each peer, scaling (speed ratio: above 1.00 means {s} is faster)", "",
                      "| metric | " + " | ".join(peers) + " |", "|---|" + "---:|" * len(peers)]
            for m in scale:
                cells = [ratio_cell(med.get((s, m)), med.get((p, m)), directions[m]) for p in peers]
                lines.append(f"| {m[len(SCALE):]} | " + " | ".join(cells) + " |")
    if memory:
        variants = [n for n in names if n in {v for v, _ in memory}]
        workloads = []
        for _, w in memory:
            if w not in workloads:
                workloads.append(w)
        lines += ["", "## Daemon peak resident memory by workload (MiB)", "",
                  f"Block cache {q.cache_size // 2**20} MiB; bound: cache + 64 MiB = "
                  f"{q.cache_size // 2**20 + 64} MiB.", "",
                  "| workload | " + " | ".join(variants) + " |", "|---|" + "---:|" * len(variants)]
        for w in workloads:
            cells = [f"{memory[(v, w)] / 2**20:.0f}" if (v, w) in memory else "–" for v in variants]
            lines.append(f"| {w} | " + " | ".join(cells) + " |")
    if extra:
        lines += ["", "## Notes", ""] + [f"- {e}" for e in extra]
    md = "\n".join(lines) + "\n"
    for name in (f"{stamp}.md", "latest.md"):
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(md)
    csv_path = os.path.join(out_dir, f"{stamp}.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "cpu", "cores", "filesystem", "metric", "better", "repetition", "value"])
        for (n, m), vals in sorted(samples.items()):
            for i, v in enumerate(vals):
                w.writerow([stamp, info["cpu"], info["cores"], n, m, directions[m], i + 1, f"{v:.6g}"])
    # Drawn from the CSV as written (values to 6 digits), so that
    # `bench/plot.py` on it draws the very same charts.
    for path in plot.plot_csv(csv_path, out_dir, order=list(METRICS)):
        print(f"wrote {path}")
    return md


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strata", help="the strata binary (release build)")
    ap.add_argument("--plot", metavar="CSV", help="only redraw the charts from an earlier run's CSV")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes, for checking the harness")
    ap.add_argument("--only", default="", help="comma-separated filesystems")
    ap.add_argument("--workloads", default="",
                    help=f"comma-separated workloads of {', '.join(w for w, _ in WORKLOADS)} "
                         f"(default: {','.join(DEFAULT_WORKLOADS)})")
    ap.add_argument("--baseline", action="append", default=[], metavar="LABEL=BINARY",
                    help="also run strata-general from another build, as strata-general@LABEL, "
                         "and compare the two (repeatable)")
    ap.add_argument("--scale-counts", default=None,
                    help="file counts of the scale workload (default 1000,10000,100000; quick 1000,10000)")
    ap.add_argument("--cache-size", type=int, default=64 * 2**20, help="strata's block cache, bytes")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--dir", default=None, help="where stores and mounts go (default: a new temporary directory)")
    ap.add_argument("--backing", choices=["auto", "dir", "ext4-image"], default="auto",
                    help="dir: the directory's own filesystem; ext4-image: a journaled ext4 on a loop "
                         "device in it; auto (default): the image when the directory is on an ext4 "
                         "without a journal")
    ap.add_argument("--image-gib", type=int, default=32, help="size of the sparse ext4 image, GiB")
    q = ap.parse_args()
    if q.plot:
        for path in plot.plot_csv(q.plot, q.out, order=list(METRICS)):
            print(f"wrote {path}")
        return
    if not q.strata:
        ap.error("--strata is required to run the benchmarks")
    counts = q.scale_counts or ("1000,10000" if q.quick else "1000,10000,100000")
    q.scale_counts = [int(c) for c in counts.split(",")]
    top = tempfile.mkdtemp(prefix="strata-bench-", dir=q.dir)
    base, image = top, None
    backing = "ext4"
    if q.backing == "ext4-image" or (q.backing == "auto" and journal_missing(top)):
        image = JournaledExt4(top, q.image_gib)
        base = image.mnt
        backing = ("ext4 with a journal (mkfs defaults), on a loop device with direct I/O over a "
                   "sparse image on the machine's disk" + (", which has an ext4 without one"
                                                         if q.backing == "auto" else ""))
    try:
        run(q, base, backing, ap.error)
    finally:
        # Nothing is deleted under an image still mounted.
        if image is None or image.close():
            shutil.rmtree(top, ignore_errors=True)


def run(q, base, backing, fail):
    """The run proper, with stores and mounts under `base`."""
    fss = [Plain("ext4", base), Bindfs("bindfs", base), Gocryptfs("gocryptfs", base),
           Securefs("securefs", base), Cryfs("cryfs", base),
           Strata("strata-general", base, "general", q.strata, q.cache_size),
           Strata("strata-max", base, "max", q.strata, q.cache_size)]
    for b in q.baseline:
        label, _, binary = b.partition("=")
        if not label or not binary:
            fail(f"--baseline wants LABEL=BINARY, not {b}")
        fss.append(Strata(f"strata-general@{label}", base, "general", os.path.abspath(binary), q.cache_size))
    if q.only:
        keep = q.only.split(",")
        fss = [f for f in fss if f.name in keep]
    chosen = q.workloads.split(",") if q.workloads else DEFAULT_WORKLOADS
    unknown = set(chosen) - {w for w, _ in WORKLOADS}
    if unknown:
        fail(f"unknown workloads: {', '.join(sorted(unknown))}")
    workloads = [w for w in WORKLOADS if w[0] in chosen]
    directions = dict(METRICS) | scale_metrics(q)
    info = machine()
    info["backing"] = backing
    info["strata"] = version([q.strata, "--version"])
    samples = {}
    extra = []
    failures = []
    try:
        for f in fss:
            f.setup()
        for rep in range(q.reps):
            for wname, w in workloads:
                order = fss[rep % len(fss):] + fss[:rep % len(fss)]
                for f in order:
                    if isinstance(f, Strata):
                        f.workload = wname
                    load = os.getloadavg()[0]
                    f.mount()
                    t0 = time.time()
                    try:
                        res = w(f, q)
                    except Exception as e:  # a peer failing one workload keeps the run going
                        print(f"rep {rep + 1} {wname:7} {f.name:15} FAILED: {str(e).strip().splitlines()[-1][:200]}",
                              flush=True)
                        failures.append(f"{f.name}: {wname} failed in repetition {rep + 1}: "
                                        f"{str(e).strip().splitlines()[-1][:200]}")
                        res = {}
                    finally:
                        f.umount()
                    if not res:
                        continue
                    print(f"rep {rep + 1} {wname:7} {f.name:15} {time.time() - t0:6.1f} s  load {load:4.1f}  "
                          + ", ".join(f"{k} {fmt(v)}" for k, v in res.items()), flush=True)
                    for k, v in res.items():
                        samples.setdefault((f.name, k), []).append(v)
        for f in fss:
            if isinstance(f, Strata):
                vault = os.path.join(base, "unlock-vault")
                sh([f.bin, "vault", "create", "--vault", vault, "--passphrase-file", f.passfile])
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    sh([f.bin, "vault", "list", "--vault", vault, "--passphrase-file", f.passfile])
                    times.append(time.perf_counter() - t0)
                extra.append(f"vault unlock with the default Argon2id parameters (`strata vault list`, "
                             f"whole command): median {statistics.median(times):.2f} s")
                break
    finally:
        for f in fss:
            try:
                f.umount()
            except Exception as e:  # keep unmounting the others
                print(f"unmount {f.name}: {e}", file=sys.stderr)
    memory = {(f.name, w): v for f in fss if isinstance(f, Strata) for w, v in f.peaks.items()}
    extra += failures
    print(report(samples, [f.name for f in fss], info, q, q.out, extra, memory, directions))


if __name__ == "__main__":
    main()
