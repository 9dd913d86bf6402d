#!/usr/bin/env bash
# Equivalence of the `symtab` tier's cross-file graph with the library's, at
# scale: the machine's Python library dir (`sysconfig.get_paths()["stdlib"]`,
# site-packages included, `__pycache__` left out) copied as a project.
#
# After a full build and after each step of an edit sequence, the tier's graph
# (`tiers export symtab`, `graph.files` with `symbols_digest` blanked, and
# `graph.modules`) must equal the graph the library resolves from scratch on the
# same tree (`crates/py-symbols/examples/symtab_graph.rs`: every file extracted,
# `resolve_incremental(None, ..)`). Each incremental build must also have parsed
# only the files the step wrote. Steps:
#
#   a  a new top-level function appended to json/decoder.py   (an interface edit)
#   b  `def formatdate(` renamed to `formatdate2` in email/utils.py (an imported name goes)
#   c  json/scanner.py deleted                                  (an imported module goes)
#   d  json/scanner.py added back with other content            (a module appears)
#   e  zzns/sub/mod.py (a new namespace package) and zz_user.py importing it
#   f  zzns/sub/__init__.py added (the namespace package becomes a regular one)
#   g  zzns/sub/mod.py deleted (zz_user.py's imports now partly dangle)
#   h  a body-only edit of json/encoder.py (its interface unchanged)
#   i  json/scanner.py restored to its original content (a content seen before)
#   j  zzshadow.py and zzshadow/__init__.py: one module provided by two paths
#   k  zzshadow.py's function renamed (the shadowed zzshadow/__init__.py calls it)
#   l  zzshadow.py deleted (zzshadow/__init__.py becomes the provider)
#
# Exits 1 on any difference or unexpected parse count. Steps k and l differ at
# 170319e: a file's resolution does not record its own module name among the
# modules it consulted, so the shadowed `zzshadow/__init__.py`, which reads the
# interface of `zzshadow.py` under that name, is not redone when it changes
# (`resolve_incremental(Some(prev), ..)` reuses it the same way).
#
# Usage: bench/symtab/equivalence.sh
#   TIERS=/path/to/tiers          skips the release build of tiers
#   GRAPH=/path/to/symtab_graph   skips the release build of the example
#   KEEP=1                        keeps the temp dir (its path is printed)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
if [[ -z "${TIERS:-}" ]]; then
    cargo build --release --quiet --bin tiers --manifest-path "$root/Cargo.toml"
    TIERS=$CARGO_TARGET_DIR/release/tiers
fi
if [[ -z "${GRAPH:-}" ]]; then
    cargo build --release --quiet -p py-symbols --example symtab_graph --manifest-path "$root/Cargo.toml"
    GRAPH=$CARGO_TARGET_DIR/release/examples/symtab_graph
fi
src=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
work=$(mktemp -d "${TMPDIR:-/tmp}/symtab-equiv.XXXXXX")
if [[ -n "${KEEP:-}" ]]; then
    echo "temp dir kept: $work"
else
    trap 'rm -rf "$work"' EXIT
fi
proj=$work/project
mkdir -p "$proj"
(cd "$src" && tar cf - --exclude=__pycache__ .) | (cd "$proj" && tar xf -)
printf '[tiers.symtab]\nkind = "symtab"\n' >"$proj/tiers.toml"
echo "corpus: $src -> $(cd "$proj" && find . -name '*.py' -not -path './.tiers/*' | wc -l) .py files; $(nproc) cores"

cat >"$work/compare.py" <<'PY'
"""Compare the tier's export (argv[1]) with the library's graph (argv[2])."""
import json
import sys

GRAPH_LINE = b'],"graph":'


def load_tier(path):
    """(input file count, graph) of an export. The exporter writes one file a
    line and the graph after a line starting `],"graph":`; the per-file
    symbols are skipped (only each line's path is read). Falls back to a
    whole-document parse if the layout is not that."""
    n_files = 0
    with open(path, "rb") as f:
        f.readline()
        for line in f:
            if line.startswith(GRAPH_LINE):
                rest = (line[len(GRAPH_LINE):] + f.read()).rstrip()
                if rest.endswith(b"}"):
                    return n_files, json.loads(rest[:-1])
                break
            if line.startswith(b'{"path":'):
                n_files += 1
    with open(path, "rb") as f:
        doc = json.load(f)
    return len(doc["files"]), doc["graph"]


def first_diff(a, b):
    """Index of the first differing item of two lists."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def item(xs, i):
    return json.dumps(xs[i], sort_keys=True) if i < len(xs) else "(none)"


def module_diffs(path, t, l):
    out = []
    for key in sorted(set(t) | set(l)):
        if key == "symbols_digest":
            continue
        tv, lv = t.get(key), l.get(key)
        if tv == lv:
            continue
        if isinstance(tv, dict) and isinstance(lv, dict):
            only_t = sorted(set(tv) - set(lv))
            only_l = sorted(set(lv) - set(tv))
            differ = sorted(k for k in set(tv) & set(lv) if tv[k] != lv[k])
            out.append(
                f"{path}: {key} differ: only in tier {only_t[:5]}, only in library "
                f"{only_l[:5]}, different values for {differ[:5]}"
            )
        elif isinstance(tv, list) and isinstance(lv, list):
            i = first_diff(tv, lv)
            out.append(
                f"{path}: {key} differ ({len(tv)} in tier, {len(lv)} in library); "
                f"first at #{i}: tier {item(tv, i)} vs library {item(lv, i)}"
            )
        else:
            out.append(f"{path}: {key}: tier {json.dumps(tv)} vs library {json.dumps(lv)}")
    return out


def main():
    n_inputs, tier = load_tier(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        lib = json.load(f)
    tf, lf = tier["files"], lib["files"]
    diffs = []
    common = 0
    imports = calls = deps = 0
    for path in sorted(set(tf) | set(lf)):
        if path not in lf:
            diffs.append(f"{path}: only in the tier's graph (module {tf[path].get('module')})")
            continue
        if path not in tf:
            diffs.append(f"{path}: only in the library's graph (module {lf[path].get('module')})")
            continue
        common += 1
        imports += len(lf[path]["imports"])
        calls += len(lf[path]["calls"])
        deps += len(lf[path]["deps"])
        diffs.extend(module_diffs(path, tf[path], lf[path]))
    tm, lm = tier["modules"], lib["modules"]
    for m in sorted(set(tm) | set(lm)):
        if tm.get(m) != lm.get(m):
            diffs.append(f"modules[{m!r}]: tier {tm.get(m)!r} vs library {lm.get(m)!r}")
    print(
        f"  compared {common:,} modules ({n_inputs:,} tier inputs; {len(lm):,} module names), "
        f"{imports:,} imports, {calls:,} calls, {deps:,} deps: "
        + ("identical" if not diffs else f"{len(diffs):,} difference(s)")
    )
    for d in diffs[:10]:
        print(f"    {d}")
    sys.exit(1 if diffs else 0)


main()
PY

failed=0
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# check STEP EXPECTED_PARSED: build, print the summary, compare with the library.
check() {
    local step=$1 expect=$2 t0 summary parsed build_ms export_ms graph_ms
    t0=$(date +%s%N)
    summary=$("$TIERS" -C "$proj" -q build --json |
        python3 -c 'import json,sys; t=json.load(sys.stdin)["tiers"][0]; print(t["status"] + ": " + (t.get("summary") or ""))')
    build_ms=$(ms_since "$t0")
    echo "$step"
    echo "  build ($build_ms ms): $summary"
    parsed=$(sed -n 's/.*parsed \([0-9,]*\) files\{0,1\},.*/\1/p' <<<"$summary" | tr -d ,)
    if [[ -n "$expect" && "$parsed" != "$expect" ]]; then
        echo "  UNEXPECTED: parsed ${parsed:-?} files, the step wrote $expect"
        failed=1
    fi
    t0=$(date +%s%N)
    "$TIERS" -C "$proj" -q export symtab -o "$work/tier.json"
    export_ms=$(ms_since "$t0")
    t0=$(date +%s%N)
    "$GRAPH" "$proj" >"$work/lib.json" 2>"$work/graph.err" || {
        cat "$work/graph.err"
        exit 1
    }
    graph_ms=$(ms_since "$t0")
    echo "  export $export_ms ms; library graph $graph_ms ms ($(tail -1 "$work/graph.err" | sed 's/^symtab_graph: //'))"
    if ! python3 "$work/compare.py" "$work/tier.json" "$work/lib.json"; then
        failed=1
    fi
}

check "full build" ""

# The comparer must see a difference: one call dropped from the library's graph.
python3 - "$work/lib.json" "$work/lib-perturbed.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
path = next(p for p, m in g["files"].items() if m["calls"])
g["files"][path]["calls"].pop()
json.dump(g, open(sys.argv[2], "w"))
PY
if python3 "$work/compare.py" "$work/tier.json" "$work/lib-perturbed.json" >"$work/self-check.out"; then
    echo "comparer self-check FAILED: a dropped call went unnoticed"
    exit 1
fi
echo "comparer self-check: a dropped call is reported ($(sed -n 2p "$work/self-check.out" | cut -c1-100)...)"
rm -f "$work/lib-perturbed.json"

printf '\n\ndef _equivalence_added(x):\n    return x\n' >>"$proj/json/decoder.py"
check "a) interface edit: a function appended to json/decoder.py" 1

grep -q '^def formatdate(' "$proj/email/utils.py" || {
    echo "email/utils.py has no \`def formatdate(\`: pick another rename" >&2
    exit 1
}
sed -i 's/^def formatdate(/def formatdate2(/' "$proj/email/utils.py"
check "b) rename: formatdate -> formatdate2 in email/utils.py" 1

cp "$proj/json/scanner.py" "$work/scanner.py.orig"
rm "$proj/json/scanner.py"
check "c) delete json/scanner.py" 0

cat >"$proj/json/scanner.py" <<'EOF'
"""A different scanner."""


def make_scanner(context):
    return Scanner(context).scan


class Scanner:
    def __init__(self, context):
        self.context = context

    def scan(self, string, idx):
        return helper(string), idx


def helper(s):
    return s
EOF
check "d) json/scanner.py back with other content" 1

mkdir -p "$proj/zzns/sub"
cat >"$proj/zzns/sub/mod.py" <<'EOF'
def hello():
    return 1


class K:
    def m(self):
        return hello()
EOF
cat >"$proj/zz_user.py" <<'EOF'
import zzns
import zzns.sub.mod
from zzns import sub
from zzns.sub import mod
from zzns.sub.mod import hello, K

zzns.sub.mod.hello()
sub.mod.hello()
mod.hello()
hello()
K().m()
EOF
check "e) new namespace package zzns/sub/mod.py and zz_user.py importing it" 2

printf 'from .mod import hello as sub_hello\n' >"$proj/zzns/sub/__init__.py"
check "f) zzns/sub/__init__.py added" 1

rm "$proj/zzns/sub/mod.py"
check "g) delete zzns/sub/mod.py" 0

printf '\nprint("equivalence body edit")\n' >>"$proj/json/encoder.py"
check "h) body edit of json/encoder.py" 1

cp "$work/scanner.py.orig" "$proj/json/scanner.py"
check "i) json/scanner.py restored to its original content" 0

# One module provided by two paths: `zzshadow.py` wins over
# `zzshadow/__init__.py` (first in path order), whose own `from . import x`
# reads the winner's interface.
printf 'def x():\n    pass\n' >"$proj/zzshadow.py"
mkdir -p "$proj/zzshadow"
printf 'from . import x\n\nx()\n' >"$proj/zzshadow/__init__.py"
check "j) zzshadow.py and zzshadow/__init__.py, one module from two paths" 2

printf 'def y():\n    pass\n' >"$proj/zzshadow.py"
check "k) zzshadow.py: x renamed to y (zzshadow/__init__.py calls x)" 1

rm "$proj/zzshadow.py"
check "l) delete zzshadow.py (zzshadow/__init__.py now provides zzshadow)" 0

if [[ $failed -ne 0 ]]; then
    echo "FAILED: the tier and the library differ (or a build parsed more than it should)"
    exit 1
fi
echo "OK: every graph matched"
