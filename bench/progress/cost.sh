#!/usr/bin/env bash
# The cost of the progress display (issue 16): full `symtab` builds of the
# machine's Python library (the corpus of bench/symtab/tier.sh) with the display
# on against `-q`, both in a pseudo-terminal (`script`, 120 columns) so that the
# display is really drawn, alternating, each from an empty cache dir. Prints
# every time and the medians.
#
# Usage: bench/progress/cost.sh [RUNS]     (default 3 of each)
#   TIERS=/path/to/tiers   skips the release build
#   CORPUS=DIR             the project copy (default: the one bench/symtab/tier.sh keeps,
#                          made here when missing)
set -euo pipefail

runs=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -z "${TIERS:-}" ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
    cargo build --release --quiet --bin tiers --manifest-path "$root/Cargo.toml"
    TIERS=$CARGO_TARGET_DIR/release/tiers
fi
proj=${CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/tiers-bench/symtab-project}
if [[ ! -f "$proj/.git/tiers-bench-complete" ]]; then
    # Made as bench/symtab/tier.sh makes it, which then uses it too.
    src=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
    rm -rf "$proj"
    mkdir -p "$proj"
    (cd "$src" && tar cf - --exclude=__pycache__ .) | (cd "$proj" && tar xf -)
    printf '[tiers.symtab]\nkind = "symtab"\n' >"$proj/tiers.toml"
    git -C "$proj" init -q
    git -C "$proj" add -A >/dev/null 2>&1
    git -C "$proj" -c user.name=bench -c user.email=bench@localhost commit -qm corpus
    touch "$proj/.git/tiers-bench-complete"
fi
git -C "$proj" checkout -q -- .
git -C "$proj" clean -qfd -e .tiers
work=$(mktemp -d "${TMPDIR:-/tmp}/progress-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "project: $proj; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"

n=0
# Milliseconds of one full build in a pseudo-terminal: `build` with extra flags
# $1; its terminal output is kept in $work/out-$n.
full_build() {
    n=$((n + 1))
    [[ -d "$proj/.tiers" ]] && mv "$proj/.tiers" "$work/old-cache-$n"
    rm -rf "$work"/old-cache-*
    sync
    local t0 t1
    t0=$(date +%s%N)
    script -qfec "stty cols 120 rows 40; exec '$TIERS' -C '$proj' $1 build" /dev/null \
        </dev/null >"$work/out-$n"
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

full_build "" >/dev/null   # warm-up: the page cache, the store's directories
on=() off=()
for ((i = 0; i < runs; i++)); do
    on+=("$(full_build "")")
    grep -q "parsing files" "$work/out-$n" || { echo "the display was not drawn" >&2; exit 1; }
    off+=("$(full_build -q)")
    if grep -q "parsing files" "$work/out-$n"; then echo "-q drew the display" >&2; exit 1; fi
done
m_on=$(median "${on[@]}")
m_off=$(median "${off[@]}")
echo "display on:  ${on[*]} ms  (median $m_on)"
echo "-q:          ${off[*]} ms  (median $m_off)"
awk -v a="$m_on" -v b="$m_off" 'BEGIN {printf "cost of the display: %+.1f %%\n", (a - b) * 100 / b}'
