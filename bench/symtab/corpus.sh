# Sourced by the benchmarks on the Python library corpus (bench/symtab/tier.sh,
# bench/progress/cost.sh), with `root` set to the repository: sets TIERS (a
# release build unless given), src (the machine's Python library dir) and proj
# (its copy as a project with a symtab tier, committed to git, reset to that
# commit; CORPUS= to choose where it is kept).
if [[ -z "${TIERS:-}" ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
    cargo build --release --quiet --bin tiers --manifest-path "$root/Cargo.toml"
    TIERS=$CARGO_TARGET_DIR/release/tiers
fi
src=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
# The project is copied once and kept (reset to its commit on every run):
# copying and deleting 50,000 files before each run left the file system busy
# enough to slow the first builds after it by half.
proj=${CORPUS:-${XDG_CACHE_HOME:-$HOME/.cache}/tiers-bench/symtab-project}
if [[ ! -f "$proj/.git/tiers-bench-complete" ]]; then
    rm -rf "$proj"
    mkdir -p "$proj"
    (cd "$src" && tar cf - --exclude=__pycache__ .) | (cd "$proj" && tar xf -)
    printf '[tiers.symtab]\nkind = "symtab"\n' >"$proj/tiers.toml"
    git -C "$proj" init -q
    git -C "$proj" add -A >/dev/null 2>&1
    git -C "$proj" -c user.name=bench -c user.email=bench@localhost commit -qm corpus
    touch "$proj/.git/tiers-bench-complete"
else
    git -C "$proj" checkout -q -- .
    git -C "$proj" clean -qfd -e .tiers
fi
