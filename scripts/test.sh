#!/usr/bin/env bash
# The test command: installs what the tests need on a Debian/Ubuntu machine
# (FUSE 3, attr tools, sqlite3, stress-ng), then runs formatting, lint and every test,
# including the ones that mount real FUSE filesystems (they need /dev/fuse
# and root, or a user allowed to mount).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)
if [ ${#need[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "test.sh: please install: ${need[*]}" >&2
        exit 1
    fi
fi
if [ ! -e /dev/fuse ]; then
    echo "test.sh: /dev/fuse is missing: the mount tests cannot run here" >&2
    exit 1
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --no-fail-fast 2>&1
