#!/usr/bin/env bash
# Type-checks strata for macOS on a Linux machine: `cargo check
# --all-targets` for aarch64-apple-darwin and x86_64-apple-darwin with
# warnings denied. scripts/test.sh runs it; so can anyone:
#
#   bash scripts/macos-check.sh [TARGET...]
#
# How: the Rust toolchain here has no standard library for the Apple
# targets. Debian's bookworm-security archive carries rustc-web together
# with rust-web-src (the standard library's source), so their packages are
# downloaded with apt-get and unpacked (dpkg -x, nothing is installed), and
# cargo checks with RUSTC pointing at that rustc and -Zbuild-std, building
# the standard library for each Apple target from source. A check needs no
# linker and no SDK; build scripts that compile C for the target (blake3,
# ring, SQLite) get a stand-in compiler that writes empty objects, and
# fuser's pkg-config probe for macFUSE gets a stand-in fuse.pc (libfuse 2.9.7,
# the library macFUSE ships), i.e. fuser's default macOS configuration.
#
# Everything is cached in $STRATA_TOOLS (default ~/.cache/strata-tools): the
# unpacked toolchain (macos-rust-VERSION) and the target directory
# (macos-check-target, with the standard library built once per target:
# minutes the first time, seconds after that).
#
# Environment:
#   STRATA_TOOLS       cache directory (see above)
#   RUST_WEB_VERSION   Debian version of rustc-web/rust-web-src to use
#                      (default: the one below; if the archive no longer has
#                      it, the archive's current one)
#   MACOS_CHECK_LOG    directory for the per-target logs (default: the cache)
set -euo pipefail
cd "$(dirname "$0")/.."
project=$(pwd)

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(aarch64-apple-darwin x86_64-apple-darwin)

tools="${STRATA_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-tools}"
mkdir -p "$tools"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# --- 1. Debian's rustc-web and its standard library source, unpacked ------
pinned=1.96.0+dfsg1-1~deb12u2
version="${RUST_WEB_VERSION:-$pinned}"

# Whether apt knows `rustc-web=$1`; runs apt-get update once if it knows
# nothing yet.
apt_has() {
    apt-cache show "rustc-web=$1" >/dev/null 2>&1
}
if ! apt_has "$version"; then
    $sudo apt-get update -qq
fi
if ! apt_has "$version"; then
    candidate=$(apt-cache policy rustc-web | sed -n 's/^ *Candidate: *//p')
    if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
        echo "macos-check: Debian's rustc-web is not available from apt here" >&2
        exit 3
    fi
    echo "macos-check: rustc-web $version is gone from the archive; using $candidate" >&2
    version=$candidate
fi
root="$tools/macos-rust-${version%%+*}"

if [ ! -x "$root/usr/bin/rustc" ] || [ ! -f "$root/usr/lib/rustlib/src/rust/library/Cargo.lock" ]; then
    echo "macos-check: unpacking Debian rustc-web $version into $root" >&2
    debs=$(mktemp -d)
    # libstd-rust-web-X.Y and libllvmN are named by version: read them from
    # the Depends lines.
    libstd=$(apt-cache show "libstd-rust-web-dev=$version" |
        sed -n 's/^Depends: *\(libstd-rust-web-[0-9.]*\).*/\1/p' | head -1)
    llvm=$(apt-cache show "$libstd=$version" |
        sed -n 's/^Depends:.*\(libllvm[0-9][0-9]*\).*/\1/p' | head -1)
    if [ -z "$libstd" ] || [ -z "$llvm" ]; then
        echo "macos-check: cannot resolve the packages of rustc-web $version" >&2
        exit 3
    fi
    (cd "$debs" && apt-get download -q "rustc-web=$version" "rust-web-src=$version" \
        "libstd-rust-web-dev=$version" "$libstd=$version" "$llvm" >/dev/null 2>&1) || {
        echo "macos-check: apt-get download of rustc-web $version failed" >&2
        exit 3
    }
    # What the unpacked libraries need from the system (libstdc++, libffi,
    # libxml2, libz3…): installed if missing.
    ours=" rustc-web rust-web-src libstd-rust-web-dev $libstd $llvm "
    need=()
    for d in "$debs"/*.deb; do
        deps=$(dpkg-deb -f "$d" Depends 2>/dev/null | tr ',' '\n' |
            sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/ //g')
        for p in $deps; do
            case "$ours" in *" $p "*) continue ;; esac
            dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
        done
    done
    if [ ${#need[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${need[@]}" >/dev/null
    fi
    rm -rf "$root.tmp"
    mkdir -p "$root.tmp"
    for d in "$debs"/*.deb; do dpkg -x "$d" "$root.tmp"; done
    rm -rf "$debs" "$root"
    mv "$root.tmp" "$root"
fi

# --- 2. stand-ins for the target's C compiler and macFUSE's pkg-config ---
export CARGO_TARGET_DIR="$tools/macos-check-target"
fakes="$CARGO_TARGET_DIR/stand-ins"
mkdir -p "$fakes/pkgconfig"
cat >"$fakes/cc" <<'EOF'
#!/bin/sh
# Stand-in C compiler for a type check: writes an empty output file.
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) out="$2"; shift ;;
        -o*) out="${1#-o}" ;;
        --version|-v|-dumpversion) echo "stand-in cc 0"; exit 0 ;;
    esac
    shift
done
[ -n "$out" ] && : >"$out"
exit 0
EOF
cat >"$fakes/ar" <<'EOF'
#!/bin/sh
# Stand-in archiver for a type check: writes an empty archive.
for a in "$@"; do case "$a" in *.a) printf '!<arch>\n' >"$a" ;; esac; done
exit 0
EOF
chmod +x "$fakes/cc" "$fakes/ar"
cat >"$fakes/pkgconfig/fuse.pc" <<'EOF'
prefix=/usr/local
libdir=${prefix}/lib
includedir=${prefix}/include/fuse
Name: fuse
Description: stand-in for macFUSE's libfuse (type check only)
Version: 2.9.7
Libs: -L${libdir} -lfuse
Cflags: -I${includedir} -D_FILE_OFFSET_BITS=64 -D_DARWIN_USE_64_BIT_INODE
EOF

# --- 3. the check ----------------------------------------------------------
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUSTC="$root/usr/bin/rustc"
# -Zbuild-std is unstable: the toolchain's own cargo accepts it with this.
export RUSTC_BOOTSTRAP=1
# Denies warnings in strata only: cargo caps lints of dependencies and of
# the standard library built from source.
export RUSTFLAGS="-D warnings"
unset RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER
"$RUSTC" -V >&2 || {
    echo "macos-check: the Debian rustc in $root does not run" >&2
    exit 3
}
logs="${MACOS_CHECK_LOG:-$CARGO_TARGET_DIR}"
mkdir -p "$logs"

status=0
for t in "${targets[@]}"; do
    tu=${t//-/_}
    log="$logs/check-$t.log"
    echo "macos-check: cargo check --all-targets --target $t" >&2
    set +e
    env "CC_$tu=$fakes/cc" "AR_$tu=$fakes/ar" \
        "PKG_CONFIG_ALLOW_CROSS_$tu=1" "PKG_CONFIG_LIBDIR_$tu=$fakes/pkgconfig" \
        cargo check --locked --quiet --keep-going -Zbuild-std=std,panic_abort --target "$t" \
        --all-targets --manifest-path "$project/Cargo.toml" >"$log" 2>&1
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        cat "$log" >&2
        echo "macos-check: $t: FAILED (cargo exit $rc; log $log)" >&2
        status=1
    else
        echo "macos-check: $t: ok" >&2
    fi
done
exit $status
