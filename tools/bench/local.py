#!/usr/bin/env python3
"""Local (no network) benchmarks for the foundation: capture, restore, dedup, chunk sizes.

Everything is compared side by side in one run, because this machine is shared and noisy:
  capture   kindling publish      vs  tar -I 'zstd -3' -cf   of the same cargo target/
  restore   kindling restore      vs  tar -I zstd -xf        into an empty folder
  dedup     bytes a second snapshot adds after a one-line change and a rebuild, vs its size
  chunks    the same dedup figure and the chunk count for several FastCDC size sets

Usage: python3 tools/bench/local.py [capture-restore|dedup|chunk-sizes|all] [--rounds N] [--modules M --functions F]
"""
import argparse
import os
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchlib import *  # noqa: E402,F403


def prepare(work, binary, modules, functions):
    ws = make_workspace(work / "ws", modules, functions)
    print(f"building the workspace ({modules} modules x {functions} functions)...", flush=True)
    cold = timed("cargo", "build", "-q", cwd=ws)
    key = work / "bors.key"
    public = sh(binary, "keygen", "--secret-key", key).stdout.strip()
    sh(binary, "trust", "add", "--file", work / "trust.json", "--name", "bors", "--public-key", public, "--repos", "**")
    size = tree_bytes(ws / "target")
    print(f"cold cargo build {cold:.1f} s; target/ holds {size / 1e6:.1f} MB")
    return ws, key, size


def capture_restore(binary, rounds, modules, functions):
    work = workdir("local")
    ws, key, size = prepare(work, binary, modules, functions)
    trust = work / "trust.json"
    results = {"publish": [], "tar": [], "restore": [], "untar": [], "untar+sync": []}
    # Each timed step starts with nothing dirty in the page cache: kindling flushes what it wrote before its
    # atomic swap (durability), and must not be billed for writeback the step before left behind.
    for r in range(rounds):
        store = fresh(work / "store")
        os.sync()
        results["publish"].append(timed(binary, "publish", "--store", store, "--secret-key", key,
                                        "--repo", "bench/ws", "--commit", f"r{r}", "--dir", ws / "target"))
        archive = work / "target.tar.zst"
        os.sync()
        results["tar"].append(timed("tar", "-I", "zstd -3", "-cf", archive, "-C", ws, "target"))
        out = fresh(work / "out")
        os.sync()
        results["restore"].append(timed(binary, "restore", "--store", store, "--trust", trust,
                                        "--repo", "bench/ws", "--commit", f"r{r}", "--into", out))
        untar = fresh(work / "untar")
        untar.mkdir()
        os.sync()
        results["untar"].append(timed("tar", "-I", "zstd", "-xf", archive, "-C", untar))
        untar = fresh(work / "untar")
        untar.mkdir()
        os.sync()
        results["untar+sync"].append(timed("sh", "-c", 'tar -I zstd -xf "$0" -C "$1" && sync -f "$1"', archive, untar))
    sh("diff", "-r", ws / "target", out)
    stored = kindling_json(binary, "store", "stats", "--store", work / "store")["storedBytes"]
    archive_size = (work / "target.tar.zst").stat().st_size
    p, t, rs, u, us = (median(results[k]) for k in ("publish", "tar", "restore", "untar", "untar+sync"))
    print()
    table([
        ["capture", f"{p:.2f} s", f"{size / p / 1e6:.0f} MB/s", f"{t:.2f} s", f"{size / t / 1e6:.0f} MB/s", f"{p / t:.2f}x", "<= 2x"],
        ["restore", f"{rs:.2f} s", f"{size / rs / 1e6:.0f} MB/s", f"{u:.2f} s", f"{size / u / 1e6:.0f} MB/s", f"{rs / u:.2f}x", "<= 1.5x"],
        ["restore, both durable", f"{rs:.2f} s", f"{size / rs / 1e6:.0f} MB/s", f"{us:.2f} s", f"{size / us / 1e6:.0f} MB/s",
         f"{rs / us:.2f}x", "(tar + sync -f)"],
    ], ["", "kindling", "rate", "tar+zstd", "rate", "kindling/tar", "target"])
    print(f"\nmedian of {rounds} rounds; target/ {size / 1e6:.1f} MB; store {stored / 1e6:.1f} MB vs tar.zst {archive_size / 1e6:.1f} MB")
    shutil.rmtree(work)


def dedup(binary, modules, functions, chunking=None, quiet=False, work=None):
    own = work is None
    work = work or workdir("dedup")
    if not (work / "ws").exists():
        ws, key, size = prepare(work, binary, modules, functions)
    else:
        ws, key = work / "ws", work / "bors.key"
    store = fresh(work / "store")
    extra = ["--chunking", chunking] if chunking else []
    publish = lambda commit: sh(binary, "publish", "--store", store, "--secret-key", key, "--repo", "bench/ws",
                                "--commit", commit, "--dir", ws / "target", *extra)
    sh("git", "checkout", "-q", "-f", "main", cwd=ws)
    # Every measurement starts from a cold target/, so that rows are comparable.
    sh("cargo", "clean", "-q", cwd=ws)
    sh("cargo", "build", "-q", cwd=ws)
    publish("a")
    first = kindling_json(binary, "store", "stats", "--store", store)
    module = ws / "crates/core/src/m0.rs"
    text = module.read_text()
    module.write_text(text.replace("let mut total: u64 = 0;", "let mut total: u64 = 1;", 1))
    sh("cargo", "build", "-q", cwd=ws)
    publish("b")
    second = kindling_json(binary, "store", "stats", "--store", store)
    sh("git", "checkout", "-q", "--", ".", cwd=ws)
    snapshot = tree_bytes(ws / "target")
    added = second["plainBytes"] - first["plainBytes"]
    added_stored = second["storedBytes"] - first["storedBytes"]
    if not quiet:
        print(f"\nsecond snapshot: {snapshot / 1e6:.1f} MB in all; it added {added / 1e6:.1f} MB of new chunks "
              f"({added / snapshot:.1%}), {added_stored / 1e6:.1f} MB on disk compressed")
    result = (first["chunkCount"], snapshot, added, added_stored, second["storedBytes"])
    if own:
        shutil.rmtree(work)
    return result


def chunk_sizes(binary, modules, functions):
    work = workdir("chunks")
    prepare(work, binary, modules, functions)
    rows = []
    for sizes in ["4096/16384/65536", "8192/32768/131072", "16384/65536/262144", "32768/131072/524288", "65536/262144/1048576"]:
        chunks, snapshot, added, added_stored, stored = dedup(binary, modules, functions, sizes, quiet=True, work=work)
        label = "/".join(f"{int(x) // 1024}K" for x in sizes.split("/"))
        rows.append([label, chunks, f"{added / 1e6:.1f} MB", f"{added / snapshot:.1%}", f"{stored / 1e6:.1f} MB"])
    print()
    table(rows, ["min/normal/max", "chunks (first)", "added by change", "of snapshot", "store after both"])
    shutil.rmtree(work)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="all", choices=["capture-restore", "dedup", "chunk-sizes", "all"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modules", type=int, default=24)
    parser.add_argument("--functions", type=int, default=24)
    args = parser.parse_args()
    binary = setup()
    if args.which in ("capture-restore", "all"):
        capture_restore(binary, args.rounds, args.modules, args.functions)
    if args.which in ("dedup", "all"):
        dedup(binary, args.modules, args.functions)
    if args.which in ("chunk-sizes", "all"):
        chunk_sizes(binary, args.modules, args.functions)


if __name__ == "__main__":
    main()
