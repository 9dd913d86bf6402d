#!/usr/bin/env bash
# The cost of the progress display (issue 16): full `symtab` builds of the
# machine's Python library (the corpus of bench/symtab/tier.sh) with the display
# on against `-q`, both in a pseudo-terminal (`script`, 120 columns) so that the
# display is really drawn, alternating, each from an empty cache dir. Prints
# every wall time and CPU time (user + system, of tiers alone: what the display
# costs, less blurred by other work on the machine) and their medians.
#
# Usage: bench/progress/cost.sh [RUNS]     (default 3 of each)
#   TIERS=/path/to/tiers   skips the release build
#   CORPUS=DIR             the project copy (default: the one bench/symtab/tier.sh keeps,
#                          made here when missing)
set -euo pipefail

runs=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=bench/symtab/corpus.sh
source "$root/bench/symtab/corpus.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/progress-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "project: $proj; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"

n=0
# One full build in a pseudo-terminal: `build` with extra flags $1. Sets `ms` to
# its wall time and `cpu` to its CPU time in milliseconds; its terminal output
# is kept in $work/out-$n.
full_build() {
    n=$((n + 1))
    [[ -d "$proj/.tiers" ]] && mv "$proj/.tiers" "$work/old-cache-$n"
    rm -rf "$work"/old-cache-*
    sync
    local t0 t1
    t0=$(date +%s%N)
    script -qfec "stty cols 120 rows 40; exec /usr/bin/time -f '%U %S' -o '$work/time-$n' '$TIERS' -C '$proj' $1 build" /dev/null \
        </dev/null >"$work/out-$n"
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    cpu=$(awk '{printf "%d", ($1 + $2) * 1000}' "$work/time-$n")
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

full_build ""   # warm-up: the page cache, the store's directories
on=() off=() on_cpu=() off_cpu=()
for ((i = 0; i < runs; i++)); do
    full_build ""
    on+=("$ms")
    on_cpu+=("$cpu")
    grep -q "parsing files" "$work/out-$n" || { echo "the display was not drawn" >&2; exit 1; }
    full_build -q
    off+=("$ms")
    off_cpu+=("$cpu")
    if grep -q "parsing files" "$work/out-$n"; then echo "-q drew the display" >&2; exit 1; fi
done
report() {
    local what=$1 m_on m_off
    shift
    local -n with=$1 without=$2
    m_on=$(median "${with[@]}")
    m_off=$(median "${without[@]}")
    echo "$what, display on: ${with[*]} ms (median $m_on)"
    echo "$what, -q:         ${without[*]} ms (median $m_off)"
    awk -v a="$m_on" -v b="$m_off" -v w="$what" \
        'BEGIN {printf "%s cost of the display: %+.1f %%\n", w, (a - b) * 100 / b}'
}
report "wall time" on off
report "CPU time" on_cpu off_cpu
