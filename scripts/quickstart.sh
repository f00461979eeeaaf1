#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine: install FUSE 3, build
# strata, create the vault and a default store if they do not exist yet, and
# mount it on ~/strata.
#
#   STRATA_PASSPHRASE_FILE=FILE   read the passphrase from FILE instead of
#                                 asking on the terminal
#   STRATA_STORE, STRATA_MOUNT    override the store and mount locations
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v fusermount3 >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq fuse3 >/dev/null
fi
cargo build --release --locked
bin="$PWD/target/release/strata"

store="${STRATA_STORE:-$HOME/.local/share/strata/store}"
mnt="${STRATA_MOUNT:-$HOME/strata}"
pass=()
if [ -n "${STRATA_PASSPHRASE_FILE:-}" ]; then
    pass=(--passphrase-file "$STRATA_PASSPHRASE_FILE")
fi

if [ ! -e "$store/strata.conf" ]; then
    mkdir -p "$(dirname "$store")"
    "$bin" init "$store" --preset general "${pass[@]}"
fi
mkdir -p "$mnt"
"$bin" mount "$store" "$mnt" "${pass[@]}"
echo "strata is mounted on $mnt (disks: $(ls "$mnt" | tr '\n' ' '))"
echo "unmount with: $bin umount $mnt"
