#!/usr/bin/env python3
"""An independent implementation of Specs/manifest.md (Python standard library + `cryptography`).

It writes Specs/vectors/manifest-v1.json, which the Swift tests check byte for byte. Two implementations
agreeing on the bytes is the evidence that the spec alone is enough to implement the format.
Usage: python3 tools/spec/manifest_vectors.py [--check]
"""
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

from speclib import uvarint, text, write_vectors

DOMAIN = b"kindling-manifest-v1\x00"
KINDS = {"file": 0, "directory": 1, "symlink": 2}


def blob(b):
    return uvarint(len(b)) + b


def blake2b256(b):
    return hashlib.blake2b(b, digest_size=32).digest()


def encode_body(entries, extra):
    out = bytearray(uvarint(len(entries)))
    files = chunks = 0
    for e in sorted(entries, key=lambda e: e["path"].encode()):
        kind = KINDS[e["kind"]]
        mode = 0o777 if e["kind"] == "symlink" else int(e["mode"], 8)
        out += text(e["path"]) + bytes([kind]) + uvarint(mode) + uvarint(e["mtime"])
        if e["kind"] == "file":
            content = e["content"].encode()
            refs = [(blake2b256(content), len(content))] if content else []
            out += uvarint(len(refs))
            for chunk_id, length in refs:
                out += chunk_id + uvarint(length)
            files += len(content)
            chunks += len(refs)
        elif e["kind"] == "symlink":
            out += text(e["target"])
    out += uvarint(len(extra))
    for name in sorted(extra, key=lambda k: k.encode()):
        out += text(name) + blob(extra[name].encode())
    return bytes(out), files, chunks


def encode_header(m, public_key, body, file_bytes, chunk_refs):
    out = bytearray(b"KNDM" + uvarint(1))
    out += text(m["repository"]) + text(m["commit"]) + uvarint(m["createdAt"]) + public_key
    out += uvarint(len(m["cacheKey"]))
    for name in sorted(m["cacheKey"], key=lambda k: k.encode()):
        out += text(name) + text(m["cacheKey"][name])
    out += blake2b256(body) + uvarint(len(body)) + uvarint(len(m["entries"])) + uvarint(file_bytes) + uvarint(chunk_refs)
    return bytes(out)


def main():
    seed = bytes(range(32))
    manifest = {
        "repository": "rust-lang/kindling-demo",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "createdAt": 1767225600000000000,
        "cacheKey": {
            "profile": "debug",
            "rustc": "rustc 1.95.0 (59807616e 2026-04-14)",
            "target": "x86_64-unknown-linux-gnu",
        },
        "entries": [
            {"path": "Cargo.lock", "kind": "file", "mode": "644", "mtime": 1767225600123456789, "content": "# lock\n"},
            {"path": "empty", "kind": "file", "mode": "600", "mtime": 1767225600000000000, "content": ""},
            {"path": "link", "kind": "symlink", "mode": "777", "mtime": 1767225601000000000, "target": "src/hello.txt"},
            {"path": "src", "kind": "directory", "mode": "755", "mtime": 1767225602000000000},
            {"path": "src/hello.txt", "kind": "file", "mode": "644", "mtime": 1767225603999999999,
             "content": "hello, kindling\n"},
        ],
        "extra": {"note": "test vector"},
    }
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    body, file_bytes, chunk_refs = encode_body(manifest["entries"], manifest["extra"])
    header = encode_header(manifest, public, body, file_bytes, chunk_refs)
    signature = key.sign(DOMAIN + header)
    manifest_file = b"KNDF" + uvarint(1) + blob(header) + signature + blob(body)
    vector = {
        "description": "Specs/manifest.md test vector: one manifest, its canonical bytes, id and signature",
        "seed": seed.hex(),
        "publicKey": "ed25519:" + public.hex(),
        "manifest": manifest,
        "headerHex": header.hex(),
        "bodyHex": body.hex(),
        "manifestId": blake2b256(header).hex(),
        "signature": signature.hex(),
        "manifestFileHex": manifest_file.hex(),
    }
    write_vectors("manifest-v1.json", vector)


if __name__ == "__main__":
    main()
