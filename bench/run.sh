#!/usr/bin/env bash
# Benchmarks strata against the peers Debian ships, in one interleaved run:
#   bench/run.sh [--reps N] [--quick] [--only a,b] [--workloads seq,rand,meta,sqlite,append]
#                [--baseline-rev REV]...
# --baseline-rev builds strata at git revision REV (in a worktree under
# target/) and measures it beside this build as "strata-general@REV" (preset
# general). Comparisons with a baseline are kept in bench/results/baselines/
# (bench/results/ itself holds the full runs the README charts come from).
# Installs what it needs (fio, gocryptfs, securefs, cryfs, bindfs, fuse3),
# builds strata in release mode and writes bench/results/<date>.{md,csv},
# bench/results/latest.md and the ratio tables as SVG charts
# (<date>-strata-*.svg, latest-strata-*.svg). Needs root (FUSE mounts,
# dropping caches, and the loop device of --backing ext4-image, which it
# picks itself when the directory is on an ext4 without a journal). `bench/run.sh --plot bench/results/<date>.csv` only
# redraws the charts of an earlier run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--plot" ]; then
    exec python3 bench/harness.py "$@"
fi

need=()
for tool in fio gocryptfs securefs cryfs bindfs fusermount3 python3 pgrep; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if ((${#need[@]})); then
    pkgs=(fio gocryptfs securefs cryfs bindfs fuse3 python3 procps)
    echo "installing ${pkgs[*]} (missing: ${need[*]})"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi

args=()
baselines=()
while (($#)); do
    if [ "$1" = "--baseline-rev" ] && [ $# -ge 2 ]; then
        baselines+=("$2")
        shift 2
    else
        args+=("$1")
        shift
    fi
done

cargo build --release --locked --quiet
for rev in "${baselines[@]}"; do
    src="target/bench-base/$rev"
    if [ ! -d "$src" ]; then
        git worktree add --detach "$src" "$rev" >/dev/null
    fi
    (cd "$src" && CARGO_TARGET_DIR="$PWD/../target-$rev" cargo build --release --locked --quiet)
    args+=(--baseline "$rev=$PWD/target/bench-base/target-$rev/release/strata")
done
exec python3 bench/harness.py --strata "$PWD/target/release/strata" "${args[@]}"
