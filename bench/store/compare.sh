#!/usr/bin/env bash
# Two `tiers` binaries side by side on the symtab tier of the Python library
# corpus (bench/symtab/corpus.sh), run by run (base, new, base, new, ...) so that
# the machine's drift hits both. Written for the change that moves the cache's
# entries into a content-addressed blob store owned by the engine; its issue asks
# for these figures, medians of one run against the binary from before:
#
#   full build      `tiers build` from an absent cache dir       new no slower than base
#   edit build      one module's body edited (as in tier.sh)     <= 5% of the full build
#   no-op status    warm `tiers status` / `git status --porcelain` <= 1.5x
#   peak RSS        of the full builds (/usr/bin/time %M)        < 500 MB
#   cache disk      `du -sk .tiers` and its file count, after the full build and
#                   after 10 edit builds                          new <= base
#   fresh clone     the first build right after `git clone` of the corpus into a
#                   new directory (no warm-up), median of CLONES, against the
#                   extraction-only time of the same tree        <= 2x extraction
#
# Usage: BASE=/path/old/tiers NEW=/path/new/tiers bench/store/compare.sh [RUNS]
#   RUNS          full builds per binary, each followed by 10 edits (default 3)
#   NEW           unset: `cargo build --release --bin tiers` of this tree
#                 (in CARGO_TARGET_DIR, default target/)
#   BASE          unset: BASE_REV is required, a git revision whose `tiers` is
#                 built once in a temporary worktree (CARGO_TARGET_DIR
#                 BASE_TARGET_DIR, default ~/.cache/tiers-bench/base-target) and
#                 kept as ~/.cache/tiers-bench/base-REVISION/tiers
#   COUNTS        the `symtab_counts` example; unset: built from this tree
#   CLONES        fresh clones per binary (default 3)
#   CORPUS=DIR    where the project copy is kept (as in tier.sh)
#
# The extraction-only time is the one bench/symtab/oracle.py prints for the Rust
# side: `symtab_counts` on oracle.py's listing of the tree's `.py` files, the
# summary's `seconds` (reading and extraction on every core), run on each clone
# right after its build.
set -euo pipefail

started=$(date +%s)
runs=${1:-3}
clones=${CLONES:-3}
edits=10
root=$(cd "$(dirname "$0")/../.." && pwd)
bench_cache=${XDG_CACHE_HOME:-$HOME/.cache}/tiers-bench
base_tree=""
work=""
cleanup() {
    if [[ -n $base_tree ]]; then
        git -C "$root" worktree remove --force "$base_tree" 2>/dev/null || rm -rf "$base_tree"
    fi
    if [[ -n $work ]]; then
        echo "removing $work" >&2
        rm -rf "$work"
    fi
}
trap cleanup EXIT

if [[ -z ${NEW:-} ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
    cargo build --release --quiet --bin tiers --manifest-path "$root/Cargo.toml"
    NEW=$CARGO_TARGET_DIR/release/tiers
fi
if [[ -z ${BASE:-} ]]; then
    if [[ -z ${BASE_REV:-} ]]; then
        echo "error: set BASE=/path/to/tiers, or BASE_REV=REVISION to build one" >&2
        exit 2
    fi
    rev=$(git -C "$root" rev-parse --verify --quiet "$BASE_REV^{commit}") ||
        { echo "error: \`$BASE_REV\` is not a revision of $root" >&2; exit 2; }
    BASE=$bench_cache/base-$rev/tiers
    if [[ ! -x $BASE ]]; then
        base_tree=$(mktemp -d "${TMPDIR:-/tmp}/tiers-base.XXXXXX")
        git -C "$root" worktree add --detach --quiet "$base_tree" "$rev"
        base_target=${BASE_TARGET_DIR:-$bench_cache/base-target}
        echo "building tiers at $rev in $base_tree (target dir $base_target)"
        CARGO_TARGET_DIR=$base_target cargo build --release --quiet --bin tiers \
            --manifest-path "$base_tree/Cargo.toml"
        mkdir -p "$(dirname "$BASE")"
        cp "$base_target/release/tiers" "$BASE.partial"
        mv "$BASE.partial" "$BASE"
        git -C "$root" worktree remove --force "$base_tree"
        base_tree=""
    fi
fi
if [[ -z ${COUNTS:-} ]]; then
    # `--workspace`, not `-p`: the example is found in whichever crate holds it.
    counts_target=${CARGO_TARGET_DIR:-$root/target}
    CARGO_TARGET_DIR=$counts_target cargo build --release --quiet --workspace --example symtab_counts \
        --manifest-path "$root/Cargo.toml"
    COUNTS=$counts_target/release/examples/symtab_counts
fi
for bin in "$BASE" "$NEW" "$COUNTS"; do
    [[ -x $bin ]] || { echo "error: \`$bin\` is not an executable" >&2; exit 2; }
done

TIERS=$NEW
# shellcheck source=bench/symtab/corpus.sh
source "$root/bench/symtab/corpus.sh"
# Caches, clones and the caches moved aside live next to the project, on its file
# system, so that moving one aside is a rename. They go at exit.
work=$(mktemp -d "$proj.compare.XXXXXX")
[[ -d "$proj/.tiers" ]] && mv "$proj/.tiers" "$work/old-cache"

echo "project: $proj (CORPUS= to choose another place)"
echo "base: $BASE ($("$BASE" --version), sha256 $(sha256sum "$BASE" | cut -c1-12))"
echo "new:  $NEW ($("$NEW" --version), sha256 $(sha256sum "$NEW" | cut -c1-12))"
echo "$(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $runs runs, $clones clones per binary"

# A command that failed stops the run, with its stderr.
failed() {
    echo "error: \`$*\` failed:" >&2
    cat "$work/stderr" >&2
    exit 1
}
# Milliseconds of wall time of one command; its output is discarded.
ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>"$work/stderr" || failed "$@"
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
med() { printf '%s\n' "$@" | median; }
# `/usr/bin/time` of one build: sets t (wall ms) and kb (peak RSS).
timed() {
    /usr/bin/time -o "$work/time" -f '%e %M' "$@" >/dev/null 2>"$work/stderr" || failed "$@"
    read -r t kb < <(awk '{printf "%d %d\n", $1 * 1000, $2}' "$work/time")
}
# "KB FILES" of a cache dir; one du invocation counts a hard-linked inode once.
disk() { echo "$(du -sk "$1" | cut -f1) $(find "$1" -type f | wc -l)"; }

declare -A full rss edit status gits disk_full files_full disk_edits files_edits clone extract
for side in base new; do
    full[$side]="" rss[$side]="" edit[$side]="" status[$side]="" gits[$side]=""
    disk_full[$side]="" files_full[$side]="" disk_edits[$side]="" files_edits[$side]=""
    clone[$side]="" extract[$side]=""
done
bin_of() { if [[ $1 == base ]]; then echo "$BASE"; else echo "$NEW"; fi; }
reset_corpus() {
    git -C "$proj" checkout -q -- .
    git -C "$proj" clean -qfd -e .tiers
}

# One warm-up build per binary, not counted: the first build after the corpus
# was copied or reset also pays for the file system settling.
for side in base new; do
    reset_corpus
    ms "$(bin_of $side)" -C "$proj" -q build >/dev/null
    mv "$proj/.tiers" "$work/warmup-$side"
done

raw=()
for i in $(seq "$runs"); do
    for side in base new; do
        bin=$(bin_of "$side")
        reset_corpus
        # The cache dir is absent: each side's last one was moved aside, not
        # deleted. Creating 20,000 files right after deleting as many makes ext4
        # search its inode tables, which would time the clean-up (see tier.sh).
        sync
        timed "$bin" -C "$proj" -q build
        full[$side]+=" $t" rss[$side]+=" $kb"
        read -r k n < <(disk "$proj/.tiers")
        disk_full[$side]+=" $k" files_full[$side]+=" $n"
        times=()
        for e in $(seq "$edits"); do
            printf '\nprint("bench edit %s")\n' "$i$e$RANDOM" >>"$proj/json/encoder.py"
            times+=("$(ms "$bin" -C "$proj" -q build)")
        done
        edit[$side]+=" ${times[*]}"
        read -r k n < <(disk "$proj/.tiers")
        disk_edits[$side]+=" $k" files_edits[$side]+=" $n"
        # The no-op check, both warm.
        "$bin" -C "$proj" -q status >/dev/null
        git -C "$proj" status --porcelain >/dev/null
        st=() gs=()
        for _ in 1 2 3 4 5; do
            st+=("$(ms "$bin" -C "$proj" -q status)")
            gs+=("$(ms git -C "$proj" status --porcelain)")
        done
        status[$side]+=" ${st[*]}" gits[$side]+=" ${gs[*]}"
        mv "$proj/.tiers" "$work/cache-$side-$i"
        raw+=("run $i $side: full $t ms, peak RSS $((kb / 1024)) MB; cache $(du -sk "$work/cache-$side-$i" | cut -f1) KB after edits; edits ${times[*]} ms; status ${st[*]} ms; git status ${gs[*]} ms")
    done
done
reset_corpus

# `symtab_counts` as oracle.py runs it, on oracle.py's listing of DIR's `.py`
# files (the cache dir and .git left out). Prints the summary's seconds in ms.
extraction_ms() {
    python3 - "$root/bench/symtab" "$COUNTS" "$1" <<'EOF'
import json, os, subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
from oracle import python_files
counts, tree = sys.argv[2], sys.argv[3]
skip = (os.sep + ".tiers" + os.sep, os.sep + ".git" + os.sep)
files = [f for f in python_files([tree]) if not any(s in f for s in skip)]
with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
    listing.write("\n".join(files) + "\n")
try:
    run = subprocess.run([counts, listing.name], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=True)
finally:
    os.unlink(listing.name)
print(int(json.loads(run.stderr.strip().splitlines()[-1])["seconds"] * 1000))
EOF
}

# The build as a user meets it: a new clone, its files new in the page cache,
# built at once. Writes still in flight from earlier steps are flushed first;
# the clone's own are not.
for i in $(seq "$clones"); do
    for side in base new; do
        dir=$work/clone-$side-$i
        sync
        t0=$(date +%s%N)
        git clone -q "$proj" "$dir"
        cloned=$((($(date +%s%N) - t0) / 1000000))
        timed "$(bin_of $side)" -C "$dir" -q build
        x=$(extraction_ms "$dir")
        clone[$side]+=" $t" extract[$side]+=" $x"
        raw+=("clone $i $side: git clone $cloned ms, first build $t ms, extraction-only $x ms")
    done
done

# The table: medians; peak RSS is the largest run.
declare -A m_full m_rss m_edit m_status m_git m_disk_full m_files_full m_disk_edits m_files_edits m_clone m_extract
for side in base new; do
    # shellcheck disable=SC2086
    {
        m_full[$side]=$(med ${full[$side]})
        m_rss[$side]=$(($(printf '%s\n' ${rss[$side]} | sort -n | tail -1) / 1024))
        m_edit[$side]=$(med ${edit[$side]})
        m_status[$side]=$(med ${status[$side]})
        m_git[$side]=$(med ${gits[$side]})
        m_disk_full[$side]=$(med ${disk_full[$side]})
        m_files_full[$side]=$(med ${files_full[$side]})
        m_disk_edits[$side]=$(med ${disk_edits[$side]})
        m_files_edits[$side]=$(med ${files_edits[$side]})
        m_clone[$side]=$(med ${clone[$side]})
        m_extract[$side]=$(med ${extract[$side]})
    }
done

div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN {if (b > 0) printf f, a / b; else printf "-"}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.1f%%", 100 * a / b; else printf "-"}'; }
# ok? of VALUE against `<= LIMIT` (or `<` with a third argument).
ok() { awk -v v="$1" -v l="$2" -v strict="${3:-}" 'BEGIN {print ((strict ? v < l : v <= l) ? "yes" : "NO")}'; }
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$@"; }

st_base=$(div "${m_status[base]}" "${m_git[base]}")
st_new=$(div "${m_status[new]}" "${m_git[new]}")
cx_base=$(div "${m_clone[base]}" "${m_extract[base]}")
cx_new=$(div "${m_clone[new]}" "${m_extract[new]}")
echo
echo "medians of $runs runs ($edits edits, 5 status checks each) and $clones clones per binary"
echo
row metric base new new/base target "ok?"
row --- --- --- --- --- ---
# "No slower" is judged with 5% for noise: the same binary on both sides differs
# by a few percent between runs on this machine.
row "full build (ms)" "${m_full[base]}" "${m_full[new]}" "$(div "${m_full[new]}" "${m_full[base]}")" \
    "new/base <= 1.05" "$(ok "$(div "${m_full[new]}" "${m_full[base]}")" 1.05)"
row "one-file edit (ms)" "${m_edit[base]}" "${m_edit[new]}" "$(div "${m_edit[new]}" "${m_edit[base]}")" "" ""
row "edit / full build" "$(pct "${m_edit[base]}" "${m_full[base]}")" "$(pct "${m_edit[new]}" "${m_full[new]}")" \
    "" "<= 5%" "$(ok "$(div "${m_edit[new]}" "${m_full[new]}" %.4f)" 0.05)"
row "no-op tiers status (ms)" "${m_status[base]}" "${m_status[new]}" "$(div "${m_status[new]}" "${m_status[base]}")" "" ""
row "git status --porcelain (ms)" "${m_git[base]}" "${m_git[new]}" "$(div "${m_git[new]}" "${m_git[base]}")" "" ""
row "tiers status / git status" "${st_base}x" "${st_new}x" "" "<= 1.5x" "$(ok "$st_new" 1.5)"
row "peak RSS, full build (MB)" "${m_rss[base]}" "${m_rss[new]}" "$(div "${m_rss[new]}" "${m_rss[base]}")" \
    "< 500 MB" "$(ok "${m_rss[new]}" 500 strict)"
row "cache after full build (KB)" "${m_disk_full[base]}" "${m_disk_full[new]}" \
    "$(div "${m_disk_full[new]}" "${m_disk_full[base]}")" "new <= base" "$(ok "${m_disk_full[new]}" "${m_disk_full[base]}")"
row "  files" "${m_files_full[base]}" "${m_files_full[new]}" "$(div "${m_files_full[new]}" "${m_files_full[base]}")" "" ""
row "cache after $edits edits (KB)" "${m_disk_edits[base]}" "${m_disk_edits[new]}" \
    "$(div "${m_disk_edits[new]}" "${m_disk_edits[base]}")" "new <= base" "$(ok "${m_disk_edits[new]}" "${m_disk_edits[base]}")"
row "  files" "${m_files_edits[base]}" "${m_files_edits[new]}" "$(div "${m_files_edits[new]}" "${m_files_edits[base]}")" "" ""
row "first build after git clone (ms)" "${m_clone[base]}" "${m_clone[new]}" "$(div "${m_clone[new]}" "${m_clone[base]}")" "" ""
row "extraction only, same tree (ms)" "${m_extract[base]}" "${m_extract[new]}" "$(div "${m_extract[new]}" "${m_extract[base]}")" "" ""
row "first build / extraction" "${cx_base}x" "${cx_new}x" "" "<= 2x" "$(ok "$cx_new" 2)"
echo
echo "raw runs (ms):"
printf '  %s\n' "${raw[@]}"
total=$(($(date +%s) - started))
echo
echo "total time: $((total / 60)) min $((total % 60)) s (without removing the work dir)"
