#!/usr/bin/env python3
"""Sorts the samples of a `perf record -g` of Kindling nodes (tools/bench/swarm.py --perf) into the costs of a
byte: each sample goes to the first category whose frames appear in its call chain, so the shares add up to 100%.
Also prints the top symbols by self time and the shares by module (shared object).

Usage: python3 tools/bench/perf_summary.py PERF_DATA [--top 25]
"""
import argparse
import collections
import re
import subprocess

# First match wins: the order puts the specific (a file write inside a chunk store) before the general.
CATEGORIES = [
    ("chunk file write (open, write, rename)", r"writeChunkFile|05writeC4File"),
    ("verify: hash (BLAKE2b)", r"crypto_generichash|blake2b|libsodium"),
    ("verify: decompress (zstd)", r"ZSTD_|libzstd|ZstdDecompressor"),
    ("store commit (syncfs, SQLite)", r"syncfs|sqlite3|libsqlite"),
    ("ChunkScheduler (not in this part)", r"ChunkScheduler"),
    ("socket write (NIO, kernel)", r"Socket.*write|writev|sendmsg|tcp_sendmsg|PendingWrites|flushNow"),
    ("socket read (NIO, kernel)", r"readFromSocket|tcp_recvmsg|Socket.*read"),
    ("frame and message coding", r"WireMessage|FrameDecoder|FrameEncoder|CanonicalReader|CanonicalWriter|"
                                 r"ByteToMessage|MessageToByte|12KindlingWire"),
    ("chunk serving (store read, cache)", r"serveChunk|readVerifiedCompressed|cachedVerifiedChunk|VerifiedChunkCache"),
    ("task and thread switches (futex, schedule)", r"futex|__schedule|finish_task_switch|swift_task_switch|"
                                                    r"dispatch_semaphore|_dispatch_"),
    ("NIO event loop, async channel", r"NIOAsyncChannel|SelectableEventLoop|NIOAsyncWriter|NIOThreadPool|epoll"),
    ("gossip, peers, node actor", r"GossipState|PeerBook|MeshNode|PeerConnection"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    script = subprocess.run(["perf", "script", "-i", args.data, "-F", "comm,ip,sym,dso"], capture_output=True,
                            text=True, check=True).stdout
    patterns = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
    categories, selfs, modules = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    for sample in script.split("\n\n"):
        frames = [line.strip() for line in sample.strip().split("\n")[1:] if line.strip()]
        if not frames:
            continue
        total += 1
        leaf = frames[0].split(None, 1)[1] if " " in frames[0] else frames[0]
        selfs[re.sub(r"\+0x[0-9a-f]+", "", leaf)[:150]] += 1
        module = re.search(r"\(([^)]*)\)\s*$", frames[0])
        modules[(module.group(1).rsplit("/", 1)[-1] if module else "?")] += 1
        chain = "\n".join(frames)
        for name, pattern in patterns:
            if pattern.search(chain):
                categories[name] += 1
                break
        else:
            categories["other"] += 1
    print(f"{total} samples")
    print("\nby cost of a byte (first matching category of the call chain):")
    for name, count in categories.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nby module (self):")
    for name, count in modules.most_common(10):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print(f"\ntop {args.top} symbols (self):")
    for name, count in selfs.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
