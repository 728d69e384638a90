#!/usr/bin/env python3
"""Writes the seed corpus of tools/fuzz from the spec vectors (Specs/vectors): one folder per fuzz target, each
input in the layout its target reads (Fuzz/FuzzTargets.swift). Usage: fuzz_seeds.py OUTPUT-FOLDER"""
import hashlib
import json
import pathlib
import shutil
import sys

from speclib import uvarint

ROOT = pathlib.Path(__file__).resolve().parents[2]


def pieces(parts, wide=False):
    """The targets' piece layout: each part preceded by its length, one byte (or two, big-endian)."""
    out = b""
    for part in parts:
        out += len(part).to_bytes(2 if wide else 1, "big") + part
    return out


def main():
    output = pathlib.Path(sys.argv[1])
    wire = json.loads((ROOT / "Specs/vectors/wire-v1.json").read_text())
    manifest = json.loads((ROOT / "Specs/vectors/manifest-v1.json").read_text())
    h = bytes.fromhex
    seeds = {name: [] for name in
             ("frame", "message", "handshake", "header", "body", "manifestfile", "trust", "trustdoc", "lan",
              "sealed", "control", "nodejson", "headrecord")}

    framed = [h(f["hex"]) for key in ("frames", "malformedFrames", "errorTruncation") for f in wire[key]]
    for mode in ("open", "private"):
        for side in ("initiator", "responder"):
            framed.append(h(wire[mode][side]["helloFrame"]))
            body = h(wire[mode][side]["authBody"])
            framed.append(len(body).to_bytes(4, "big") + body)
    header, signature = h(manifest["headerHex"]), h(manifest["signature"])
    announce = bytes([0x10]) + uvarint(len(header)) + header + signature
    framed.append(len(announce).to_bytes(4, "big") + announce)
    seeds["message"] = [f[4:] for f in framed] + [h(f["plain"]) for f in wire["sealed"]["frames"] if f["plain"]]
    for index, (mode, read_size) in enumerate(((0, 255), (1, 0), (1, 6), (3, 100), (4, 255), (5, 31))):
        seeds["frame"].append(bytes([mode, read_size]) + b"".join(framed[index * 5:index * 5 + 6]))
    seeds["frame"].append(bytes([1, 255]) + b"".join(h(f["frame"]) for f in wire["sealed"]["frames"]))

    for mode, private in ((0, False), (1, True), (2, False), (3, True)):
        block = wire["private" if private else "open"]
        hello = h(block["initiator"]["helloFrame"])[4:]
        second = h(wire["sealed"]["header"]) if private else h(block["initiator"]["authBody"])
        seeds["handshake"].append(bytes([mode]) + pieces([hello, second, h(block["initiator"]["authBody"])]))

    seeds["header"] = [header]
    seeds["body"] = [h(manifest["bodyHex"]), uvarint(0)]
    seeds["manifestfile"] = [h(manifest["manifestFileHex"])]
    seeds["lan"] = [h(d["datagram"]) for d in wire["lan"]]
    sealed = [h(f["sealed"]) for f in wire["sealed"]["frames"]]
    seeds["sealed"] = [pieces(sealed, wide=True), pieces(sealed[:2], wide=True)]

    key = manifest["publicKey"]
    trust = [
        {"kindling-trust": 1, "keys": [{"name": "bors", "publicKey": key, "repositories": ["rust-lang/*"]}]},
        {"kindling-trust": 1, "keys": [
            {"name": "old", "publicKey": key, "repositories": ["**", "a/b"], "validFrom": "2026-01-01T00:00:00Z",
             "validUntil": "2026-06-30T12:00:00Z", "revoked": True},
            {"name": "node", "publicKey": wire["open"]["initiator"]["nodeId"], "repositories": ["rust-lang/rust"]}]},
        {"kindling-trust": 1, "keys": []},
    ]
    seeds["trust"] = [json.dumps(t, indent=2).encode() for t in trust]

    documents = json.loads((ROOT / "Specs/vectors/trust-document-v1.json").read_text())
    seeds["trustdoc"] = [json.dumps(d["file"], indent=2).encode() for d in documents["documents"]]
    seeds["trustdoc"] += [h(d["canonicalHex"]) for d in documents["documents"]]
    seeds["trustdoc"] += [f["text"].encode() for f in documents["refusedFiles"]]
    seeds["trustdoc"] += [h(c["hex"]) for c in documents["refusedCanonical"]]

    heads = json.loads((ROOT / "Specs/vectors/head-record-v1.json").read_text())
    seeds["headrecord"] = [h(r["encodedHex"]) for r in heads["records"]] + [h(r["hex"]) for r in heads["refused"]]

    requests = [{"op": "status"}, {"op": "peers"}, {"op": "snapshots", "repository": "rust-lang/rust"},
                {"op": "announce", "manifest": manifest["manifestId"]},
                {"op": "fetch", "repository": "r/x", "commit": "0123abcd", "cacheKey": {"profile": "debug"}},
                {"op": "trust-publish", "document": "eyJraW5kbGluZy10cnVzdC1kb2N1bWVudCI6IDF9"}]
    events = [{"event": "error", "message": "malformed control request"},
              {"event": "progress", "progress": {"manifest": manifest["manifestId"], "totalBytes": 10,
                                                 "doneBytes": 5, "peers": 2}},
              {"event": "result", "manifest": manifest["manifestId"], "snapshots": [
                  {"id": manifest["manifestId"], "repository": "r/x", "commit": "c", "createdAt": 1,
                   "cacheKey": {"k": "v"}, "bytes": 3, "local": True, "holders": 2}]}]
    seeds["control"] = [b"\x00" + json.dumps(r).encode() for r in requests]
    seeds["control"] += [b"\x01" + json.dumps(e).encode() for e in events]
    seeds["nodejson"] = [json.dumps(n).encode() for n in (
        {"listen": "127.0.0.1:7341", "peers": ["seed.example:7341", "[::1]:7341"], "trust": "/etc/kindling/trust.json",
         "follow": ["rust-lang/*"], "lan": True, "meshSecret": "/etc/kindling/mesh.secret", "maxSize": "20G",
         "uploadLimit": "10M", "maxPeers": 32, "peerExchange": False, "logLevel": "info"},
        {"listen": ":7341", "maxSize": "1.5GiB", "meshName": "office"}, {},
        {"roots": [wire["open"]["initiator"]["nodeId"], wire["open"]["responder"]["nodeId"]], "threshold": 2})]

    for name, inputs in seeds.items():
        folder = output / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for data in inputs:
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


if __name__ == "__main__":
    main()
