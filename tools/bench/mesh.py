#!/usr/bin/env python3
"""Mesh benchmarks, each side by side with a plain HTTP origin (nginx) in the same run, on loopback:

  single   one peer to one peer, MB/s, next to curl of the same bytes from nginx
  swarm    one seed and N = 4, 8, 16 nodes fetching at once: seed upload / snapshot size and
           time for all N / time for one alone, next to N curls of the same tarball from nginx
  shaped   the same swarm with every host in a network namespace of its own and its link limited to
           --shaped-mbps megabytes per second each way (tools/bench/netns.py; needs root): on loopback every node
           shares one CPU and unlimited bandwidth, so only here does "N downloaders take about as long as one"
           measure distribution rather than CPU
  gossip   time and messages for an announcement to reach every node of an in-process mesh of 50-200 nodes
  memory   a node's resident memory idle and its peak while transferring

Usage: python3 tools/bench/mesh.py [--size-mb 300] [--swarm 4,8,16] [--shaped-mbps 25] [--skip-shaped]
                                   [--gossip 50,100,200] [--skip-gossip]
"""
import argparse
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchlib import *  # noqa: E402,F403
import netns  # noqa: E402


class Node:
    def __init__(self, binary, store, trust, peers=(), extra=(), host="127.0.0.1", namespace=None):
        self.binary, self.store, self.host = binary, store, host
        args = [binary, "node", "--store", store, "--listen", f"{host}:0", "--trust", trust, "--log-level", "warning"]
        for peer in peers:
            args += ["--peer", peer]
        args = [str(a) for a in args + list(extra)]
        if namespace:
            args = netns.in_namespace(namespace, args)
        self.log = open(f"{store}.log", "w")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            status = self.status()
            if status and status.get("node", {}).get("listenPort"):
                self.port = status["node"]["listenPort"]
                return
            time.sleep(0.1)
        raise SystemExit(f"node at {store} did not start; see {store}.log")

    def status(self):
        result = sh(self.binary, "status", "--store", self.store, "--all", "--json", check=False)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            return None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def rss_mb(self, field="VmRSS"):
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"warning: node {self.store} did not stop within 30 s of SIGTERM; killed", flush=True)
            self.process.kill()
            self.process.wait()
        self.log.close()


def free_port():
    """A TCP port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nginx(root, port, work, probe_path, timeout=20, host="127.0.0.1", namespace=None):
    """Starts nginx on host:port serving root; returns once it answers a HEAD of probe_path."""
    conf = work / f"nginx-{host}.conf"
    conf.write_text(f"""
daemon off; worker_processes 2; error_log {work}/nginx-error.log; pid {work}/nginx-{host}.pid;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  server {{ listen {host}:{port}; root {root}; }} }}
""")
    command = ["nginx", "-c", str(conf), "-p", str(work)]
    if namespace:
        command = netns.in_namespace(namespace, command)
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://{host}:{port}/{probe_path}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"nginx exited with status {process.returncode}; see {work}/nginx-error.log")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"nginx did not answer {url} within {timeout} s; see {work}/nginx-error.log")


def wait(what, condition, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def fetch_all(binary, stores):
    start = time.perf_counter()
    processes = [subprocess.Popen([str(binary), "fetch", "--store", s, "--repo", "bench/data", "--commit", "c1", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in stores]
    results = []
    for p in processes:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"fetch failed: {err}")
        results.append(json.loads(out))
    return time.perf_counter() - start, results


def curl_all(url, count, work, namespaces=None):
    start = time.perf_counter()
    commands = [["curl", "-sf", "-o", str(work / f"curl-{i}.tar"), url] for i in range(count)]
    if namespaces:
        commands = [netns.in_namespace(namespace, command) for namespace, command in zip(namespaces, commands)]
    processes = [subprocess.Popen(command) for command in commands]
    for p in processes:
        if p.wait() != 0:
            raise SystemExit(f"curl of {url} failed; see {work}/nginx-error.log")
    elapsed = time.perf_counter() - start
    sizes = {(work / f"curl-{i}.tar").stat().st_size for i in range(count)}
    for i in range(count):
        (work / f"curl-{i}.tar").unlink()
    if len(sizes) != 1 or sizes.pop() < 1 << 20:
        raise SystemExit("curl downloaded something other than the tarball")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--swarm", default="4,8,16")
    parser.add_argument("--gossip", default="50,100,200")
    parser.add_argument("--skip-gossip", action="store_true")
    parser.add_argument("--shaped-mbps", type=int, default=25)
    parser.add_argument("--skip-shaped", action="store_true")
    args = parser.parse_args()
    binary = setup()
    sh("swift", "build", "-c", "release", "--product", "kindling-bench", cwd=ROOT, capture=False)
    work = workdir("mesh")
    data = work / "data"
    data.mkdir()
    print(f"generating {args.size_mb} MB of incompressible data...", flush=True)
    for i in range(args.size_mb // 3):
        (data / f"part{i:03}.bin").write_bytes(os.urandom(3 << 20))
    size = tree_bytes(data)
    key, trust = work / "bors.key", work / "trust.json"
    public = sh(binary, "keygen", "--secret-key", key).stdout.strip()
    sh(binary, "trust", "add", "--file", trust, "--name", "bors", "--public-key", public, "--repos", "**")
    seed_store = work / "seed"
    sh(binary, "publish", "--store", seed_store, "--secret-key", key, "--repo", "bench/data", "--commit", "c1",
       "--dir", data, "--pin")
    www = work / "www"
    www.mkdir()
    # nginx workers run as an unprivileged user: they must be able to reach the tarball.
    os.chmod(work, 0o755)
    sh("tar", "-cf", www / "data.tar", "-C", work, "data")
    port = free_port()
    http = nginx(www, port, work, "data.tar")
    url = f"http://127.0.0.1:{port}/data.tar"
    seed = Node(binary, seed_store, trust)
    rows = []
    try:
        # Single transfer: three rounds, kindling and curl interleaved; the median of each.
        node_times, curl_times = [], []
        for round_ in range(3):
            store = fresh(work / f"single-{round_}")
            dev = Node(binary, store, trust, peers=[seed.address])
            wait("snapshot known", lambda: any(s["commit"] == "c1" for s in (dev.status() or {}).get("snapshots", [])))
            idle_rss = dev.rss_mb()
            elapsed, _ = fetch_all(binary, [store])
            node_times.append(elapsed)
            peak_rss = dev.rss_mb("VmHWM")
            dev.stop()
            curl_times.append(curl_all(url, 1, work))
        single, single_curl = median(node_times), median(curl_times)
        print()
        table([["kindling fetch", f"{single:.2f} s", f"{size / single / 1e6:.0f} MB/s"],
               ["curl from nginx", f"{single_curl:.2f} s", f"{size / single_curl / 1e6:.0f} MB/s"],
               ["ratio", f"{single / single_curl:.2f}x", "target <= 1.5x"]],
              ["single transfer", "time", "rate"])
        print(f"\nmemory: a downloading node {idle_rss:.0f} MB resident idle, {peak_rss:.0f} MB peak while fetching "
              f"{size / 1e6:.0f} MB; the seed {seed.rss_mb():.0f} MB now, {seed.rss_mb('VmHWM'):.0f} MB peak")

        for n in [int(x) for x in args.swarm.split(",")]:
            stores = [fresh(work / f"swarm{n}-{i}") for i in range(n)]
            nodes = [Node(binary, s, trust, peers=[seed.address]) for s in stores]
            wait(f"{n} nodes know the snapshot", lambda: all(
                any(s["commit"] == "c1" for s in (node.status() or {}).get("snapshots", [])) for node in nodes))
            time.sleep(1)  # let peer exchange connect the downloaders to each other
            before = seed.status()["node"]["uploadedBytes"]
            elapsed, _ = fetch_all(binary, stores)
            uploaded = seed.status()["node"]["uploadedBytes"] - before
            for node in nodes:
                node.stop()
            http_elapsed = curl_all(url, n, work)
            rows.append([n, f"{uploaded / size:.2f}", f"{elapsed:.1f} s", f"{elapsed / single:.2f}",
                         f"{n:.2f}", f"{http_elapsed:.1f} s", f"{http_elapsed / single_curl:.2f}"])
            # No deletions between measurements: ext4 then scans past recently freed inodes for a minute.
        print()
        table(rows, ["N", "seed upload / size", "all N done", "vs one alone", "HTTP origin upload / size",
                     "HTTP all N", "HTTP vs one"])
        print(f"\nsnapshot {size / 1e6:.0f} MB; targets for N=16: seed upload / size < 2, all / one < 2")
    finally:
        seed.stop()
        http.terminate()
        http.wait()
    if not args.skip_shaped:
        if netns.available():
            shaped_swarm(binary, work, trust, seed_store, www, size, [int(x) for x in args.swarm.split(",")],
                         args.shaped_mbps)
        else:
            print("\nshaped swarm skipped: it needs root and iproute2 (network namespaces)")
    if not args.skip_gossip:
        bench = pathlib.Path(sh("swift", "build", "-c", "release", "--show-bin-path", cwd=ROOT).stdout.strip()) / "kindling-bench"
        print()
        gossip_args = []
        for n in args.gossip.split(","):
            gossip_args += ["--nodes", n]
        subprocess.run([str(bench), "gossip", *gossip_args], check=True)
    shutil.rmtree(work, ignore_errors=True)


def shaped_swarm(binary, work, trust, seed_store, www, size, counts, mbps):
    """The swarm again, every host on a link of `mbps` MB/s each way: the seed, the HTTP origin, each downloader."""
    print(f"\nshaped: every host in its own network namespace, its link limited to {mbps} MB/s each way", flush=True)
    with netns.ShapedNetwork(mbps) as network:
        seed_ns, seed_ip = network.add_host("seed")
        origin_ns, origin_ip = network.add_host("origin")
        hosts = [network.add_host(f"dev{i}") for i in range(max(counts))]
        # --public: a node refuses to listen on a non-loopback address of an open mesh without it.
        seed = Node(binary, seed_store, trust, host=seed_ip, namespace=seed_ns, extra=["--public"])
        http = nginx(www, 8080, work, "data.tar", host=origin_ip, namespace=origin_ns)
        url = f"http://{origin_ip}:8080/data.tar"
        rows = []
        try:
            def swarm(n, label):
                stores = [fresh(work / f"shaped-{label}-{i}") for i in range(n)]
                nodes = [Node(binary, store, trust, peers=[seed.address], host=ip, namespace=ns,
                              extra=["--public"])
                         for store, (ns, ip) in zip(stores, hosts)]
                try:
                    wait(f"{n} shaped nodes know the snapshot", lambda: all(
                        any(s["commit"] == "c1" for s in (node.status() or {}).get("snapshots", [])) for node in nodes))
                    time.sleep(2)  # peer exchange connects the downloaders to each other
                    before = seed.status()["node"]["uploadedBytes"]
                    elapsed, _ = fetch_all(binary, stores)
                    return elapsed, seed.status()["node"]["uploadedBytes"] - before
                finally:
                    for node in nodes:
                        node.stop()
            single, _ = swarm(1, "single")
            single_http = curl_all(url, 1, work, [hosts[0][0]])
            for n in counts:
                elapsed, uploaded = swarm(n, f"n{n}")
                http_elapsed = curl_all(url, n, work, [ns for ns, _ in hosts[:n]])
                rows.append([n, f"{uploaded / size:.2f}", f"{elapsed:.1f} s", f"{elapsed / single:.2f}",
                             f"{http_elapsed:.1f} s", f"{http_elapsed / single_http:.2f}"])
        finally:
            seed.stop()
            http.terminate()
            http.wait()
    print(f"one alone: kindling {single:.1f} s ({size / single / 1e6:.0f} MB/s), curl {single_http:.1f} s "
          f"({size / single_http / 1e6:.0f} MB/s), ratio {single / single_http:.2f}x; the link allows {mbps} MB/s")
    table(rows, ["N", "seed upload / size", "all N done", "vs one alone", "HTTP all N", "HTTP vs one"])
    print(f"snapshot {size / 1e6:.0f} MB; targets for N=16: seed upload / size < 2, all / one < 2")


if __name__ == "__main__":
    main()
