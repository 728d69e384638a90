#!/usr/bin/env python3
"""The cargo benchmark: a generated workspace whose cold build takes over a minute; bors builds and publishes the
base commit; a developer has a one-line change in the big crate. Side by side, in one run:

  cold      a fresh clone, `cargo build`
  sccache   a fresh clone, `cargo build` through sccache (Debian's), its local disk cache warmed by building the
            published commit at another path (CARGO_INCREMENTAL=0: sccache does not cache incremental crates)
  kindling  a fresh clone, `kindling cargo build`, with the developer's background node following the repository:
            the snapshot was prefetched, so this is restore from the local store, freshness repair, build
  on demand the same with a node that did not prefetch: the restore fetches through the mesh first
  ideal     the incremental rebuild in the folder that built the base commit

Usage: python3 tools/bench/cargo.py [--big-members 4] [--modules 150] [--functions 80]
  (four large crates of 150 x 80 generated functions: a cold build of over a minute; the change is in one of them)
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchlib import *  # noqa: E402,F403
from mesh import Node, wait  # noqa: E402


def change_one_line(checkout):
    path = pathlib.Path(checkout) / "crates/core/src/m0.rs"
    text = path.read_text()
    path.write_text(text.replace("let mut total: u64 = 0;", "let mut total: u64 = 42;", 1))


def timed_build(cmd, cwd, env=None):
    start = time.perf_counter()
    sh(*cmd, cwd=cwd, env=env)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-members", type=int, default=4)
    parser.add_argument("--modules", type=int, default=150)
    parser.add_argument("--functions", type=int, default=80)
    args = parser.parse_args()
    binary = setup()
    work = workdir("cargo")
    env = {"KINDLING_BUILD_ROOT": str(work / "roots"), "PATH": f"{binary.parent}:{os.environ['PATH']}"}
    origin = make_workspace(work / "origin", args.modules, args.functions, big_members=args.big_members)
    key, trust = work / "bors.key", work / "trust.json"
    public = sh(binary, "keygen", "--secret-key", key).stdout.strip()
    sh(binary, "trust", "add", "--file", trust, "--name", "bors", "--public-key", public, "--repos", "**")

    print("bors: building the base commit at the build root...", flush=True)
    sh("git", "clone", "-q", origin, work / "bors")
    bors_env = {**env, "KINDLING_HOME": str(work / "bors-store"), "KINDLING_NO_RESTORE": "1"}
    bors_cold = timed_build([binary, "cargo", "build", "-q"], work / "bors", bors_env)
    sh(binary, "publish", "--cargo", "--secret-key", key, "--pin", cwd=work / "bors", env=bors_env)
    seed = Node(binary, work / "bors-store", trust)
    dev = Node(binary, work / "dev-store", trust, peers=[seed.address], extra=["--follow", "**"])
    other = Node(binary, work / "other-store", trust, peers=[seed.address])
    wait("the developer node prefetched the snapshot",
         lambda: any(s["local"] for s in (dev.status() or {}).get("snapshots", [])), timeout=300)
    wait("the other node knows the snapshot", lambda: any((other.status() or {}).get("snapshots", [])))

    results = {}
    try:
        # cold
        sh("git", "clone", "-q", origin, work / "cold")
        change_one_line(work / "cold")
        results["cold"] = timed_build(["cargo", "build", "-q"], work / "cold")

        # sccache, warmed at another path on the published commit
        sccache = {"RUSTC_WRAPPER": "sccache", "SCCACHE_DIR": str(work / "sccache"), "CARGO_INCREMENTAL": "0",
                   "SCCACHE_CACHE_SIZE": "20G"}
        subprocess.run(["sccache", "--stop-server"], capture_output=True)
        sh("sccache", "--start-server", env=sccache)
        sh("git", "clone", "-q", origin, work / "sccache-warm")
        timed_build(["cargo", "build", "-q"], work / "sccache-warm", sccache)
        sh("git", "clone", "-q", origin, work / "sccache-dev")
        change_one_line(work / "sccache-dev")
        results["sccache"] = timed_build(["cargo", "build", "-q"], work / "sccache-dev", sccache)
        stats = sh("sccache", "--show-stats", env=sccache).stdout
        subprocess.run(["sccache", "--stop-server"], capture_output=True, env={**os.environ, **sccache})

        # kindling, snapshot fetched on demand through the mesh
        sh("git", "clone", "-q", origin, work / "on-demand")
        change_one_line(work / "on-demand")
        other_env = {**env, "KINDLING_HOME": str(work / "other-store"), "KINDLING_TRUST": str(trust)}
        results["on demand"] = timed_build([binary, "cargo", "build", "-q"], work / "on-demand", other_env)

        # kindling, snapshot prefetched by the background node
        sh("git", "clone", "-q", origin, work / "developer")
        change_one_line(work / "developer")
        dev_env = {**env, "KINDLING_HOME": str(work / "dev-store"), "KINDLING_TRUST": str(trust)}
        start = time.perf_counter()
        out = sh(binary, "cargo", "build", "-v", cwd=work / "developer", env=dev_env)
        results["kindling"] = time.perf_counter() - start
        compiled = [l.split()[1] for l in out.stderr.splitlines() if l.strip().startswith("Compiling")]
        restored = [l for l in out.stderr.splitlines() if l.startswith("kindling: restored")]

        # the local ideal: incremental, in place
        change_one_line(work / "bors")
        results["ideal"] = timed_build([binary, "cargo", "build", "-q"], work / "bors", bors_env)
        same = (sh(work / "developer/target/debug/app").stdout == sh(work / "cold/target/debug/app").stdout)
    finally:
        dev.stop()
        other.stop()
        seed.stop()

    cold, warm, ideal = results["cold"], results["sccache"], results["ideal"]
    rows = [["cold build", f"{cold:.1f} s", "", "", ""],
            ["sccache (warm, other path)", f"{warm:.1f} s", "", "", ""],
            ["local incremental (ideal)", f"{ideal:.1f} s", "", "", ""]]
    for label, name in [("kindling restore + build (prefetched)", "kindling"),
                        ("kindling fetch from a peer + restore + build", "on demand")]:
        t = results[name]
        rows.append([label, f"{t:.1f} s", f"{cold / t:.1f}x", f"{warm / t:.1f}x", f"{t / ideal:.2f}x"])
    print()
    table(rows, ["one-line change in a big crate", "time", "cold / it (>= 5x)", "sccache / it (>= 3x)",
                 "it / ideal (<= 1.3x)"])
    print(f"\nbors's cold build at the build root: {bors_cold:.1f} s; the developer compiled {compiled}; "
          f"output equals the cold build's: {same}")
    for line in restored:
        print(line)
    hits = [l for l in stats.splitlines() if "hits" in l.lower() or "misses" in l.lower()]
    print("sccache: " + "; ".join(" ".join(l.split()) for l in hits[:4]))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
