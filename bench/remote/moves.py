#!/usr/bin/env python3
"""What the shared cache moves: bytes and requests of two `tiers` binaries, side by
side, on the symtab tier of the Python library corpus.

Corpus: the project bench/symtab/corpus.sh keeps (CORPUS=, default
~/.cache/tiers-bench/symtab-project; made with NEW when missing). Checkouts are
`git clone`s of it into a temp dir next to it, each with a read-write `[remote]`.

Remotes, started by this script for every run on 127.0.0.1: a directory (`file://`)
and redis-server (`redis://`, no persistence, no memory limit). Runs alternate BASE
and NEW. One run of one binary against one remote:

  1. full    clone A, empty remote and cache, `tiers build`: bytes and requests up
  2. edit    append a line to json/encoder.py in A, `tiers build`: bytes and requests up
  3. second  clone B (before the edit), `tiers build` (restores the full state), the
             same edit, `tiers build` (restores the edited state): what that last
             build downloads, and its requests
  4. cold    clone C with the edit, empty cache, `tiers build`: wall time, bytes down

Counting. Redis: on the server, `CONFIG RESETSTAT` before the build and `INFO stats`
/ `INFO commandstats` after it (bytes up = total_net_input_bytes, down =
total_net_output_bytes, requests = calls but PING, which the client's connection
pool sends before it hands out a connection and which is shown in a row of its own;
this script's own commands are measured once per server and subtracted). file://: the remote dir is listed before and after
(bytes up = sizes of the files created or changed, writes = their count); requests
and bytes down come from the line a binary prints on stderr with `-v`
("shared cache <remote>: R requests (r reads, w writes, c checks), U bytes up, D bytes
down"). A binary that prints none is assumed to read what format 1 names: the
record `records/<tier>/<key>.json` and every blob in its `blobs` list; such figures
are marked `*`. With Redis the line, when printed, is shown beside the server's
figures as a cross-check.

A run takes about a minute here, mostly the three `git clone`s of 31,000 files.

Usage (from the workspace root; builds nothing):
  BASE=/path/old/tiers NEW=/path/new/tiers python3 bench/remote/moves.py \\
      [--runs 3] [--only file,redis]
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import free_port, wait_port  # noqa: E402

EDIT = '\nprint("moves edit")\n'
EDITED = os.path.join("json", "encoder.py")
TRAFFIC = re.compile(
    r"shared cache (?P<remote>.+?): (?P<requests>\d+) requests \((?P<reads>\d+) reads, "
    r"(?P<writes>\d+) writes, (?P<checks>\d+) checks\), (?P<up>\d+) bytes up, "
    r"(?P<down>\d+) bytes down")
# Redis commands that store or remove something: shown apart from all requests.
REDIS_WRITES = {"set", "setex", "psetex", "setnx", "mset", "msetnx", "append", "setrange",
                "getset", "getdel", "del", "unlink", "rename", "renamenx", "copy",
                "hset", "hmset", "hsetnx", "expire", "pexpire", "expireat", "pexpireat"}


class Redis:
    """redis-server in `work`, and a connection of ours that reads its statistics."""

    def __init__(self, work):
        d = os.path.join(work, "redis")
        os.makedirs(d)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--maxmemory", "0", "--dir", d],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, self.proc)
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except BaseException:
            self.proc.kill()
            raise
        self.reader = self.sock.makefile("rb")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # What RESETSTAT and our INFOs add to the statistics by themselves.
        self.reset()
        self.own = {"up": 0, "down": 0, "calls": {}}
        self.own = self.read()

    def command(self, *args):
        parts = [a.encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(parts) +
                          b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        line = self.reader.readline()
        if line.startswith(b"$"):
            body = self.reader.read(int(line[1:]) + 2)
            return body[:-2].decode()
        if line.startswith(b"-") or not line:
            sys.exit(f"redis: {' '.join(args)}: {line.decode().strip() or 'no answer'}")
        return line.decode().strip()

    def reset(self):
        self.command("CONFIG", "RESETSTAT")

    def read(self):
        """Bytes up and down and calls by command since `reset`, less our own."""
        stats = dict(l.split(":", 1) for l in self.command("INFO", "stats").splitlines()
                     if ":" in l)
        calls = {}
        for line in self.command("INFO", "commandstats").splitlines():
            m = re.match(r"cmdstat_(\S+?):calls=(\d+)", line)
            if m:
                n = int(m[2]) - self.own["calls"].get(m[1], 0)
                if n:
                    calls[m[1]] = n
        return {"up": int(stats["total_net_input_bytes"]) - self.own["up"],
                "down": int(stats["total_net_output_bytes"]) - self.own["down"],
                "calls": calls}

    def stop(self):
        self.sock.close()
        self.proc.kill()
        self.proc.wait()


def listing(root):
    """path -> (size, mtime_ns) of every file under `root`."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def format1_reads(remote_dir, tier, key):
    """(bytes, requests) a format 1 restore of `key` reads: its record and blobs."""
    path = os.path.join(remote_dir, "records", tier, f"{key}.json")
    try:
        with open(path, "rb") as f:
            body = f.read()
        record = json.loads(body)
    except (OSError, ValueError):
        return None, None
    if record.get("format") != 1:
        return None, None
    blobs = record.get("blobs", [])
    return len(body) + sum(b["bytes"] for b in blobs), 1 + len(blobs)


class Bench:
    def __init__(self, corpus, env):
        self.corpus, self.env = corpus, env

    def clone(self, dest, url, edit=False):
        subprocess.run(["git", "clone", "--quiet", self.corpus, dest], check=True)
        with open(os.path.join(dest, "tiers.toml"), "a") as f:
            f.write(f'\n[remote]\nurl = "{url}"\nmode = "read-write"\n')
        if edit:
            self.edit(dest)

    @staticmethod
    def edit(project):
        with open(os.path.join(project, EDITED), "a") as f:
            f.write(EDIT)

    def build(self, tiers, project, expect):
        """One `tiers -v build --json`: (seconds, tier report, traffic line or None)."""
        started = time.perf_counter()
        out = subprocess.run([tiers, "-C", project, "-v", "build", "--json"], env=self.env,
                             capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if out.returncode != 0:
            sys.exit(f"{tiers} build in {project} failed ({out.returncode}):\n{out.stderr}")
        warnings = [l for l in out.stderr.splitlines() if re.match(r"\s*(WARN|ERROR)\b", l)]
        if warnings:
            sys.exit(f"{tiers} build in {project} warned:\n" + "\n".join(warnings))
        tier = json.loads(out.stdout)["tiers"][0]
        if tier["status"] not in expect.split("|"):
            sys.exit(f"{tiers} build in {project}: tier `{tier['name']}` is "
                     f"{tier['status']}, not {expect}:\n{json.dumps(tier, indent=2)}")
        lines = [m.groupdict() for m in map(TRAFFIC.search, out.stderr.splitlines()) if m]
        if not lines and any("bytes down" in l for l in out.stderr.splitlines()):
            print(f"note: {tiers} printed a traffic line this script cannot parse",
                  file=sys.stderr)
        if len(lines) > 1:
            print(f"note: {len(lines)} traffic lines from one build; using the last",
                  file=sys.stderr)
        traffic = {k: (v if k == "remote" else int(v)) for k, v in lines[-1].items()} \
            if lines else None
        return elapsed, tier, traffic

    def run(self, tiers, kind, dest):
        """One run of steps 1-4 against a new remote of `kind`: a dict of figures."""
        os.makedirs(dest)
        redis = None
        remote_dir = os.path.join(dest, "remote")
        if kind == "redis":
            redis = Redis(dest)
            url = redis.url
        else:
            os.makedirs(remote_dir)
            url = f"file://{remote_dir}"
        fig = {}

        def measured(step, project, expect, direction):
            before = None
            if redis:
                redis.reset()
            else:
                before = listing(remote_dir)
            t, tier, traffic = self.build(tiers, project, expect)
            fig[f"{step} traffic"] = traffic
            if redis:
                s = redis.read()
                fig[f"{step} bytes"] = s[direction]
                fig[f"{step} pings"] = s["calls"].get("ping", 0)
                fig[f"{step} requests"] = sum(s["calls"].values()) - fig[f"{step} pings"]
                fig[f"{step} writes"] = sum(n for c, n in s["calls"].items()
                                            if c.split("|")[0] in REDIS_WRITES)
                fig[f"{step} calls"] = s["calls"]
            elif direction == "up":
                after = listing(remote_dir)
                changed = [p for p, v in after.items() if before.get(p) != v]
                fig[f"{step} bytes"] = sum(after[p][0] for p in changed)
                fig[f"{step} writes"] = len(changed)
                fig[f"{step} requests"] = traffic["requests"] if traffic else None
            elif traffic:
                fig[f"{step} bytes"] = traffic["down"]
                fig[f"{step} requests"] = traffic["requests"]
            else:
                b, r = format1_reads(remote_dir, tier["name"], tier["key"])
                fig[f"{step} bytes"], fig[f"{step} requests"] = b, r
                fig[f"{step} computed"] = True
            return t

        try:
            a, b, c = (os.path.join(dest, n) for n in "ABC")
            self.clone(a, url)
            measured("full", a, "built", "up")
            self.edit(a)
            measured("edit", a, "rebuilt|built", "up")
            self.clone(b, url)
            self.build(tiers, b, "restored")
            self.edit(b)
            measured("second", b, "restored", "down")
            self.clone(c, url, edit=True)
            os.sync()  # time the restore, not the clone's writeback
            fig["cold time"] = measured("cold", c, "restored", "down")
        finally:
            if redis:
                redis.stop()
        return fig


def pct(a, b):
    return None if a is None or not b else 100 * a / b


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def show(v, kind):
    if v is None:
        return "-"
    if kind == "bytes":
        return f"{round(v):,}"
    if kind == "count":
        return f"{v:g}"
    if kind == "pct":
        return f"{v:.2f} %"
    return f"{v:.2f} s"


def describe_traffic(t):
    return "-" if not t else (f"{t['requests']} requests ({t['reads']} r, {t['writes']} w, "
                              f"{t['checks']} c), {t['up']:,} up, {t['down']:,} down")


def report(name, runs):
    """The table of medians for one remote; `runs` maps side -> list of figures."""
    for figs in runs.values():
        for f in figs:
            f["edit pct"] = pct(f["edit bytes"], f["full bytes"])
            f["second pct"] = pct(f["second bytes"], f["cold bytes"])
    rows = [
        ("full upload bytes", "full bytes", "bytes", None),
        ("full upload requests", "full requests", "count", None),
        ("full upload writes", "full writes", "count", None),
        ("edit upload bytes", "edit bytes", "bytes", None),
        ("edit upload requests", "edit requests", "count", ("<= 10", lambda n, b: n <= 10)),
        ("edit upload writes", "edit writes", "count", None),
        ("edit build PINGs (Redis pool)", "edit pings", "count", None),
        ("edit upload / full upload", "edit pct", "pct", ("<= 1 %", lambda n, b: n <= 1)),
        ("second checkout download bytes", "second bytes", "bytes", None),
        ("second checkout requests", "second requests", "count", None),
        ("second checkout / cold restore", "second pct", "pct",
         ("<= 1 %", lambda n, b: n <= 1)),
        ("cold restore download bytes", "cold bytes", "bytes", None),
        ("cold restore requests", "cold requests", "count", None),
        # "No slower", judged with 5 % for noise as bench/store/compare.sh does.
        ("cold restore time", "cold time", "time",
         ("NEW no slower (5 % noise)", lambda n, b: b is not None and n <= 1.05 * b)),
    ]
    print(f"\n{name}: medians of {len(runs['base'])} runs")
    print("| metric | BASE | NEW | NEW/BASE | target | ok? |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, key, kind, target in rows:
        cells = []
        for side in ("base", "new"):
            v = med([f.get(key) for f in runs[side]])
            step = key.split()[0]
            star = "*" if kind != "time" and any(f.get(f"{step} computed")
                                                 for f in runs[side]) else ""
            cells.append((v, show(v, kind) + star))
        (b, bs), (n, ns) = cells
        ratio = f"{n / b:.3g}" if b and n is not None and kind != "pct" else ""
        goal, ok = "", ""
        if target:
            goal = target[0]
            ok = "-" if n is None else ("yes" if target[1](n, b) else "NO")
        print(f"| {label} | {bs} | {ns} | {ratio} | {goal} | {ok} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per binary and remote")
    ap.add_argument("--only", default="file,redis", help="remotes: file,redis")
    args = ap.parse_args()
    kinds = [k for k in args.only.split(",") if k]
    if not kinds or set(kinds) - {"file", "redis"}:
        sys.exit("error: --only takes file, redis or both")
    bins = {side: os.environ.get(side.upper(), "") for side in ("base", "new")}
    for side, path in bins.items():
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit(f"error: set {side.upper()}=/path/to/tiers (got `{path}`)")
        bins[side] = os.path.abspath(path)
    if "redis" in kinds and not shutil.which("redis-server"):
        sys.exit("error: redis-server is not on PATH (or run with --only file)")

    workspace = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    corpus = os.environ.get("CORPUS") or os.path.join(cache, "tiers-bench", "symtab-project")
    if not os.path.isfile(os.path.join(corpus, ".git", "tiers-bench-complete")):
        print(f"making the corpus in {corpus} (bench/symtab/corpus.sh)")
        subprocess.run(["bash", "-c", 'root=$PWD; TIERS=$NEW; source bench/symtab/corpus.sh'],
                       cwd=workspace, check=True,
                       env=dict(os.environ, CORPUS=corpus, NEW=bins["new"]))

    # Ctrl-C and SIGTERM both end in the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix=os.path.basename(corpus) + ".moves.",
                            dir=os.path.dirname(corpus))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERS_")}
    bench = Bench(corpus, env)
    started = time.time()
    try:
        commit = subprocess.run(["git", "-C", corpus, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
        print(f"machine: {os.cpu_count()} cores, load average "
              f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
        for side, path in bins.items():
            version = subprocess.run([path, "--version"], capture_output=True,
                                     text=True).stdout.strip()
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()[:12]
            print(f"{side.upper():4}: {path} ({version}, sha256 {digest})")
        if "redis" in kinds:
            print("redis: " + subprocess.run(["redis-server", "--version"], capture_output=True,
                                             text=True).stdout.strip())
        print(f"corpus: {corpus} at {commit}; work dir {work}")
        print(f"{args.runs} runs per binary and remote ({', '.join(kinds)}), BASE and NEW "
              "alternating")

        results = {k: {"base": [], "new": []} for k in kinds}
        raw = []
        for i in range(1, args.runs + 1):
            for kind in kinds:
                for side in ("base", "new"):
                    dest = os.path.join(work, f"run-{i}-{kind}-{side}")
                    fig = bench.run(bins[side], kind, dest)
                    results[kind][side].append(fig)
                    raw.append(raw_line(i, kind, side, fig))
                    print(raw[-1], flush=True)
                    shutil.rmtree(dest)
                    os.sync()
        for kind in kinds:
            report("file://" if kind == "file" else "redis://", results[kind])
        print("\n* computed, not measured: the binary printed no traffic line, so bytes down "
              "and requests are those of the format 1 record and the blobs it names.")
        print("file://: bytes up and writes from listing the remote dir; requests and bytes "
              "down from the binary's traffic line. redis://: the server's figures.")
        print(f"load average at the end {' '.join(open('/proc/loadavg').read().split()[:3])};"
              f" {time.time() - started:.0f} s")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        shutil.rmtree(work, ignore_errors=True)


def raw_line(i, kind, side, f):
    parts = [f"run {i} {kind} {side.upper()}:"]
    for step in ("full", "edit", "second", "cold"):
        way = "up" if step in ("full", "edit") else "down"
        star = "*" if f.get(f"{step} computed") else ""
        s = f"{step} {show(f[f'{step} bytes'], 'bytes')}{star} {way}, " \
            f"{show(f[f'{step} requests'], 'count')}{star} requests"
        if f.get(f"{step} writes") is not None:
            s += f" ({f[f'{step} writes']} writes)"
        if step == "cold":
            s += f", {f['cold time']:.2f} s"
        parts.append(s)
    for step in ("full", "edit", "second", "cold"):
        extra = []
        if f.get(f"{step} calls"):
            extra.append("server " + ", ".join(f"{c} {n}" for c, n in
                                               sorted(f[f"{step} calls"].items())))
        if f.get(f"{step} traffic"):
            extra.append("line " + describe_traffic(f[f"{step} traffic"]))
        if extra:
            parts.append(f"  {step}: " + "; ".join(extra))
    return "\n    ".join(parts)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted")
