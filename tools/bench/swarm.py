#!/usr/bin/env python3
"""The CPU cost per byte of a swarm, next to nginx in the same run: one seed and N nodes on loopback fetch a
snapshot at once, then N curls fetch the same bytes as one tarball from nginx; rounds alternate the two. Prints
each round's times and ratio, the CPU seconds the seed and the nodes used, and with --perf a `perf record -g` of
every Kindling process during the kindling half of each round (one perf.data per round, for `perf report`).

This is mesh.py's swarm section alone, for measuring CPU work: it builds nothing (build the release binary first,
`swift build -c release --product kindling`), and adds no single-transfer or shaped runs.

CPU seconds are the seed's, the nodes' and the fetch commands' against nginx's and the curls': on a machine shared
with other work, the time ratio moves with the load (nginx's time more than Kindling's), the CPU ratio much less.

Usage: python3 tools/bench/swarm.py [--nodes 16] [--size-mb 208] [--rounds 2] [--perf DIR] [--binary PATH]
                                    [--work DIR]
"""
import argparse
import os
import resource
import pathlib
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchlib import *  # noqa: E402,F403
from mesh import Node, curl_all, fetch_all, free_port, nginx, wait  # noqa: E402


def cpu_seconds(pid):
    """User plus system CPU time of a process so far (its threads included), in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    """CPU seconds of this script's waited-for children so far (the fetch commands, the curls)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def nginx_cpu(master):
    """CPU seconds of nginx's master and workers so far."""
    pids = [master] + [int(p) for p in open(f"/proc/{master}/task/{master}/children").read().split()]
    return sum(cpu_seconds(pid) for pid in pids)


def prepare(binary, work, size_mb):
    """The seed's store, the trust file and nginx's tarball in `work`, made once and reused by later runs."""
    key, trust, seed_store, www = work / "bors.key", work / "trust.json", work / "seed", work / "www"
    if (www / "data.tar").exists():
        return trust, seed_store, www
    data = work / "data"
    fresh(data).mkdir(parents=True)
    for i in range(size_mb // 3):
        (data / f"part{i:03}.bin").write_bytes(os.urandom(3 << 20))
    public = sh(binary, "keygen", "--secret-key", fresh(key)).stdout.strip()
    sh(binary, "trust", "add", "--file", fresh(trust), "--name", "bors", "--public-key", public, "--repos", "**")
    sh(binary, "publish", "--store", fresh(seed_store), "--secret-key", key, "--repo", "bench/data", "--commit",
       "c1", "--dir", data, "--pin")
    fresh(www).mkdir()
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
    sh("tar", "-cf", www / "data.tar.partial", "-C", work, "data")
    (www / "data.tar.partial").rename(www / "data.tar")
    shutil.rmtree(data)
    return trust, seed_store, www


def swarm(binary, work, trust, seed_store, n, label, perf_file):
    """One swarm: a seed and `n` fresh nodes of `binary`, all fetching at once; returns the time, the CPU seconds of
    the seed, the nodes and the fetch commands, and a text of the parts."""
    seed = Node(binary, seed_store, trust)
    stores = [fresh(work / f"{label}-{i}") for i in range(n)]
    nodes = [Node(binary, s, trust, peers=[seed.address]) for s in stores]
    try:
        wait(f"{n} nodes know the snapshot", lambda: all(
            any(s["commit"] == "c1" for s in (node.status() or {}).get("snapshots", [])) for node in nodes))
        time.sleep(1)  # peer exchange connects the downloaders to each other
        pids = [seed.process.pid] + [node.process.pid for node in nodes]
        cpu_before = {pid: cpu_seconds(pid) for pid in pids}
        cli_before = children_cpu()
        perf = None
        if perf_file:
            pathlib.Path(perf_file).parent.mkdir(parents=True, exist_ok=True)
            perf = subprocess.Popen(["perf", "record", "-g", "-F", "499", "-o", perf_file, "-p",
                                     ",".join(map(str, pids))], stdout=subprocess.DEVNULL,
                                    stderr=open(f"{perf_file}.log", "w"))
            time.sleep(1)
        elapsed, _ = fetch_all(binary, stores)
        cli_cpu = children_cpu() - cli_before
        if perf:
            perf.send_signal(2)
            perf.wait()
        seed_cpu = cpu_seconds(seed.process.pid) - cpu_before[seed.process.pid]
        nodes_cpu = sum(cpu_seconds(node.process.pid) - cpu_before[node.process.pid] for node in nodes)
    finally:
        for node in nodes + [seed]:
            node.stop()
    # The recorder is a child too: the nginx side's CPU is measured after it ended.
    return (elapsed, seed_cpu + nodes_cpu + cli_cpu,
            f"seed {seed_cpu:.1f}, nodes {nodes_cpu:.1f}, fetch commands {cli_cpu:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--size-mb", type=int, default=208)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--perf", help="a folder for perf.data files (one per round)")
    parser.add_argument("--binary", default=str(ROOT / ".build/release/kindling"))
    parser.add_argument("--compare", help="another kindling binary (say, before a change), run in each round too: "
                                          "each round then runs the swarm with both, alternating, then nginx")
    parser.add_argument("--work", help="a folder kept between runs for the seed's store and the tarball")
    args = parser.parse_args()
    binary = pathlib.Path(args.binary)
    if not binary.exists():
        raise SystemExit(f"{binary} is missing: run swift build -c release --product kindling first")
    work = pathlib.Path(args.work) if args.work else workdir("swarm")
    work.mkdir(parents=True, exist_ok=True)
    trust, seed_store, www = prepare(binary, work, args.size_mb)
    size = (www / "data.tar").stat().st_size
    port = free_port()
    http = nginx(www, port, work, "data.tar")
    url = f"http://127.0.0.1:{port}/data.tar"
    binaries = [binary] + ([pathlib.Path(args.compare)] if args.compare else [])
    n = args.nodes
    ratios = {b: [] for b in binaries}
    cpu_ratios = {b: [] for b in binaries}
    try:
        for round_ in range(args.rounds):
            runs = []
            for variant, kindling in enumerate(binaries if round_ % 2 == 0 else list(reversed(binaries))):
                runs.append((kindling, *swarm(kindling, work, trust, seed_store, n, f"r{round_}-{variant}",
                                              args.perf and f"{args.perf}/round{round_}-{kindling.name}.data")))
            curl_before, nginx_before = children_cpu(), nginx_cpu(http.pid)
            http_elapsed = curl_all(url, n, work)
            http_cpu = children_cpu() - curl_before + nginx_cpu(http.pid) - nginx_before
            load = open("/proc/loadavg").read().split()[0]
            for kindling, elapsed, cpu, parts in runs:
                ratios[kindling].append(elapsed / http_elapsed)
                cpu_ratios[kindling].append(cpu / http_cpu)
                print(f"round {round_} {kindling.name}: {elapsed:.1f} s, CPU {cpu:.1f} s ({parts}); nginx "
                      f"{http_elapsed:.1f} s, CPU {http_cpu:.1f} s; time ratio {elapsed / http_elapsed:.2f}x, "
                      f"CPU ratio {cpu / http_cpu:.2f}x; load {load}", flush=True)
        for kindling in binaries:
            r, c = ratios[kindling], cpu_ratios[kindling]
            print(f"{kindling}: N={n}, snapshot {size / 1e6:.0f} MB: time ratio median {median(r):.2f}x (min "
                  f"{min(r):.2f}, max {max(r):.2f}; target <= 2x), CPU ratio median {median(c):.2f}x (min "
                  f"{min(c):.2f}, max {max(c):.2f})")
    finally:
        http.terminate()
        http.wait()
    for store in work.glob("r*-*-*"):
        shutil.rmtree(store, ignore_errors=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
