#!/usr/bin/env bash
# Microbenchmarks: one 4 KiB block through one XTS pass, 1-4 layer passes
# plus the tag, the tag alone and sixteen tags side by side, the name
# cipher and the block cache (criterion, one core),
# printed beside `openssl speed -evp aes-256-xts` for 4 KiB blocks on the
# same machine.
#   bench/micro.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || {
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq --no-install-recommends openssl
}
cargo bench --locked --bench crypto -- --noplot 2>&1 | grep -E "^[a-z].*/|time:|thrpt:" | sed 's/^ *//'
echo
echo "openssl on the same machine (one core, 4 KiB blocks):"
openssl speed -evp aes-256-xts -bytes 4096 -seconds 3 2>/dev/null | grep -E "^aes-256-xts|^AES-256-XTS|type" | tail -2
