#!/usr/bin/env bash
# Benchmark of the `symtab` tier (issue 5) on the machine's Python library dir
# (`sysconfig.get_paths()["stdlib"]`, site-packages included), copied as a project
# and committed to git. Prints medians over RUNS runs:
#
#   full build       `tiers build` with no cache dir (every file hashed and parsed)
#   peak RSS         of the full build (/usr/bin/time)
#   body edit        one module's body edited (its interface unchanged), rebuilt
#   interface edit   a function added to a module that other modules import, rebuilt
#   steady edits     body edits once retention removes an entry after every build
#   no-op check      `tiers status` on the built tree, against `git status --porcelain`
#
# Targets (issue 5, 2 cores): full build <= 5 s, edit <= 5% of full, no-op <= 1.5x git
# status, peak RSS < 500 MB.
#
# Usage: bench/symtab/tier.sh [RUNS]      (default 3)
#   TIERS=/path/to/tiers   skips the release build
#   CORPUS=DIR             where the project copy is kept (default: ~/.cache/tiers-bench/)
set -euo pipefail

runs=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/symtab-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
# shellcheck source=bench/symtab/corpus.sh
source "$root/bench/symtab/corpus.sh"
[[ -d "$proj/.tiers" ]] && mv "$proj/.tiers" "$work/old-cache-0"
echo "project: $proj (CORPUS= to choose another place)"
py_files=$(cd "$proj" && find . -name '*.py' -not -path './.tiers/*' | wc -l)
py_bytes=$(cd "$proj" && find . -name '*.py' -not -path './.tiers/*' -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "corpus: $src -> $py_files .py files, $((py_bytes / 1000000)) MB; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# Milliseconds of wall time of one command; its output is discarded.
ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
secs() { awk -v ms="$1" 'BEGIN {printf "%.2f s", ms / 1000}'; }
tiers() { "$TIERS" -C "$proj" -q "$@"; }

full=() rss=() cpu=()
# One warm-up build, not counted: the first build after copying 50,000 files
# (and deleting the last run's) also pays for the file system settling.
warmup=$(ms "$TIERS" -C "$proj" -q build)
for i in $(seq "$runs"); do
    # The last run's cache is moved aside, not deleted (the work dir goes at
    # exit): creating 20,000 files right after deleting as many makes ext4
    # search its inode tables (`recently_deleted`), which measures the file
    # system's cleanup of the previous run, not this build.
    [[ -d "$proj/.tiers" ]] && mv "$proj/.tiers" "$work/old-cache-$i"
    sync
    /usr/bin/time -o "$work/time" -f '%e %U %S %M' "$TIERS" -C "$proj" -q build --json >"$work/full.json"
    read -r wall user sys kb <"$work/time"
    full+=("$(awk -v w="$wall" 'BEGIN {printf "%d", w * 1000}')")
    cpu+=("$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%d", (u + s) * 1000}')")
    rss+=("$kb")
done
full_ms=$(printf '%s\n' "${full[@]}" | median)
cpu_ms=$(printf '%s\n' "${cpu[@]}" | median)
rss_kb=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
summary=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tiers"][0]["summary"])' "$work/full.json")

# RUNS edit builds, each after appending `printf FORMAT TAG` to FILE (new
# content every run), then one more build for its summary. Prints
# "MEDIAN_MS<TAB>SUMMARY".
edits() {
    local file=$1 format=$2 times=()
    for i in $(seq "$runs"); do
        # shellcheck disable=SC2059
        printf "$format" "$i$RANDOM" >>"$proj/$file"
        times+=("$(ms tiers build)")
    done
    # shellcheck disable=SC2059
    printf "$format" last >>"$proj/$file"
    printf '%s\t%s\n' "$(printf '%s\n' "${times[@]}" | median)" \
        "$("$TIERS" -C "$proj" build --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tiers"][0]["summary"])')"
}
# One module's body: a module-level call appended.
IFS=$'\t' read -r body_ms body_summary < <(edits json/encoder.py '\nprint("bench edit %s")\n')
# A new top-level function in a module that others import.
IFS=$'\t' read -r iface_ms iface_summary < <(edits json/decoder.py '\ndef _bench_%s():\n    pass\n')

# Steady state: enough edits that retention (`keep = 10`) removes an entry
# after every build and the store is swept every few builds; the last 10 count.
steady=()
for i in $(seq 15); do
    printf '\nprint("steady edit %s")\n' "$i$RANDOM" >>"$proj/json/encoder.py"
    t=$(ms tiers build)
    [[ $i -gt 5 ]] && steady+=("$t")
done
steady_ms=$(printf '%s\n' "${steady[@]}" | median)

# The no-op check against git status, both warm.
tiers status >/dev/null
git -C "$proj" status --porcelain >/dev/null
status=() gits=()
for i in $(seq $((runs < 5 ? 5 : runs))); do
    status+=("$(ms tiers status)")
    gits+=("$(ms git -C "$proj" status --porcelain)")
done
status_ms=$(printf '%s\n' "${status[@]}" | median)
git_ms=$(printf '%s\n' "${gits[@]}" | median)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b > 0) ? 100 * a / b : 0}'; }
echo "full build:      $(secs "$full_ms") median of ${#full[@]} (CPU $(secs "$cpu_ms"); target <= 5 s); runs: ${full[*]} ms; warm-up $warmup ms"
echo "                 $summary"
echo "peak RSS:        $((rss_kb / 1024)) MB, largest of the full builds (target < 500 MB)"
echo "body edit:       $(secs "$body_ms") = $(ratio "$body_ms" "$full_ms")% of the full build (target <= 5%)"
echo "                 $body_summary"
echo "interface edit:  $(secs "$iface_ms") = $(ratio "$iface_ms" "$full_ms")% of the full build"
echo "                 $iface_summary"
echo "steady edits:    $(secs "$steady_ms") = $(ratio "$steady_ms" "$full_ms")% of the full build (body edits with retention removing an entry each build; median of 10)"
echo "no-op check:     tiers status $(secs "$status_ms"), git status $(secs "$git_ms"): $(awk -v a="$status_ms" -v b="$git_ms" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}')x (target <= 1.5x)"
