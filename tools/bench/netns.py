"""Hosts with rate-limited links on one machine: a network namespace per host, a veth pair into a bridge, and a
token-bucket filter on each side of the pair (the host's upload and its download). Needs root and iproute2.

On loopback every node shares the same CPU and unlimited bandwidth, so a swarm's time there measures CPU, not
distribution. With every host limited to the same rate, the question a swarm answers becomes visible: does the
time for N downloaders stay near the time for one, while a single origin's grows with N?
"""
import os
import shutil
import subprocess

BRIDGE = "kbench0"
PREFIX = "10.79"


def available():
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("tc") is not None


def run(*cmd, check=True):
    return subprocess.run([str(c) for c in cmd], check=check, capture_output=True, text=True)


class ShapedNetwork:
    """Hosts on a bridge, each link limited to `mbps` megabytes per second in each direction."""

    def __init__(self, mbps):
        self.mbps = mbps
        self.hosts = []

    def __enter__(self):
        self.teardown()  # leftovers of a killed run
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{PREFIX}.0.1/16", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        return self

    def __exit__(self, *exc):
        self.teardown()

    def add_host(self, name):
        """A new host; returns (namespace, address)."""
        index = len(self.hosts) + 2
        namespace, outside, inside = f"kb-{name}", f"kb{index}a", f"kb{index}b"
        address = f"{PREFIX}.{index // 250}.{index % 250 + 2}"
        run("ip", "netns", "add", namespace)
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", inside, "netns", namespace)
        run("ip", "link", "set", outside, "master", BRIDGE)
        run("ip", "link", "set", outside, "up")
        run("ip", "netns", "exec", namespace, "ip", "addr", "add", f"{address}/16", "dev", inside)
        run("ip", "netns", "exec", namespace, "ip", "link", "set", inside, "up")
        run("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        rate = f"{self.mbps * 8}mbit"
        # Upload: the host's side of the pair; download: the bridge's side.
        run("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", inside, "root", "tbf", "rate", rate,
            "burst", "256kb", "latency", "100ms")
        run("tc", "qdisc", "add", "dev", outside, "root", "tbf", "rate", rate, "burst", "256kb", "latency", "100ms")
        self.hosts.append((namespace, outside))
        return namespace, address

    def teardown(self):
        for namespace in [line.split()[0] for line in run("ip", "netns", "list", check=False).stdout.splitlines()
                          if line.startswith("kb-")]:
            run("ip", "netns", "del", namespace, check=False)
        run("ip", "link", "del", BRIDGE, check=False)
        self.hosts = []


def in_namespace(namespace, command):
    return ["ip", "netns", "exec", namespace] + [str(c) for c in command]
