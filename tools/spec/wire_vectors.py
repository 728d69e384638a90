#!/usr/bin/env python3
"""An independent implementation of parts of Specs/wire.md (Python standard library + `cryptography`).

Writes Specs/vectors/wire-v1.json: mesh ids, both sides' Hello and Auth frames with fixed keys and challenges,
the transcript hash, the private-mesh session keys, and a few message frames. KindlingWireTests checks them.
Usage: python3 tools/spec/wire_vectors.py [--check]
"""
import hashlib
import json
import pathlib
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def text(s):
    b = s.encode()
    return uvarint(len(b)) + b


def b2b(data, key=b"", size=32):
    return hashlib.blake2b(data, key=key, digest_size=size).digest()


def kx_keypair(seed):
    """libsodium crypto_kx_seed_keypair: the secret key is BLAKE2b-256 of the seed."""
    secret = X25519PrivateKey.from_private_bytes(b2b(seed))
    return secret, secret.public_key().public_bytes(*RAW)


def kx_session(secret, own_public, peer_public, client):
    """libsodium crypto_kx_{client,server}_session_keys: BLAKE2b-512(q || client_pk || server_pk), split."""
    q = secret.exchange(X25519PublicKey.from_public_bytes(peer_public))
    client_pk, server_pk = (own_public, peer_public) if client else (peer_public, own_public)
    keys = b2b(q + client_pk + server_pk, size=64)
    return (keys[:32], keys[32:]) if client else (keys[32:], keys[:32])  # (rx, tx)


def hello(mesh_id, private, exchange_key, challenge):
    return bytes([0x01]) + b"KNDL" + uvarint(1) + uvarint(1) + mesh_id + bytes([1 if private else 0]) + exchange_key + challenge


def auth(node_key, role, transcript, port, agent):
    public = node_key.public_key().public_bytes(*RAW)
    signature = node_key.sign(b"kindling-auth-v1\x00" + bytes([role]) + transcript)
    return bytes([0x03]) + public + signature + uvarint(port) + uvarint(0) + text(agent)


def frame(body):
    return len(body).to_bytes(4, "big") + body


def main():
    open_id = b2b(b"kindling-open-mesh-v1:kindling")
    secret = bytes(range(100, 132))
    private_id = b2b(b"kindling-mesh-id-v1", key=secret)
    sides = {}
    for name, role, seed_byte, port in (("initiator", 1, 1, 7341), ("responder", 2, 2, 7342)):
        node_key = Ed25519PrivateKey.from_private_bytes(bytes([seed_byte]) * 32)
        exchange_seed = bytes([seed_byte + 10]) * 32
        kx_secret, kx_public = kx_keypair(exchange_seed)
        challenge = bytes([seed_byte + 20]) * 32
        sides[name] = dict(role=role, node_key=node_key, exchange_seed=exchange_seed, kx_secret=kx_secret,
                           kx_public=kx_public, challenge=challenge, port=port)
    out = {"description": "Specs/wire.md test vectors", "openMeshName": "kindling", "openMeshId": open_id.hex(),
           "privateMeshSecret": secret.hex(), "privateMeshId": private_id.hex()}
    for mode, mesh_id, private in (("open", open_id, False), ("private", private_id, True)):
        hellos = {n: hello(mesh_id, private, s["kx_public"], s["challenge"]) for n, s in sides.items()}
        transcript = b2b(hellos["initiator"] + hellos["responder"])
        block = {"transcript": transcript.hex()}
        for name, s in sides.items():
            entry = {
                "nodeSeed": bytes([s["role"]]).hex() * 32,
                "nodeId": "ed25519:" + s["node_key"].public_key().public_bytes(*RAW).hex(),
                "exchangeSeed": s["exchange_seed"].hex(),
                "exchangeKey": s["kx_public"].hex(),
                "challenge": s["challenge"].hex(),
                "listenPort": s["port"],
                "helloFrame": frame(hellos[name]).hex(),
                "authBody": auth(s["node_key"], s["role"], transcript, s["port"], "kindling/test").hex(),
            }
            if private:
                peer = sides["responder" if name == "initiator" else "initiator"]
                rx, tx = kx_session(s["kx_secret"], s["kx_public"], peer["kx_public"], client=name == "initiator")
                k = b2b(secret)
                context = b"kindling-wire-v1\x00" + transcript
                entry["receiveKey"] = b2b(context + rx, key=k).hex()
                entry["transmitKey"] = b2b(context + tx, key=k).hex()
            block[name] = entry
        out[mode] = block
    chunk = bytes.fromhex("11" * 32)
    out["frames"] = [
        {"message": "ping 300", "hex": frame(bytes([0x40]) + uvarint(300)).hex()},
        {"message": "getChunk request 7 chunk 11..11", "hex": frame(bytes([0x22]) + uvarint(7) + chunk).hex()},
        {"message": "noChunk request 7 chunk 11..11 busy", "hex": frame(bytes([0x24]) + uvarint(7) + chunk + b"\x01").hex()},
        {"message": "have manifest 11..11 partial bitfield 05", "hex": frame(bytes([0x11]) + chunk + b"\x00" + uvarint(1) + b"\x05").hex()},
        {"message": "catalogDigest count 2 digest 11..11", "hex": frame(bytes([0x14]) + uvarint(2) + chunk).hex()},
        {"message": "error 3 wrong mesh", "hex": frame(bytes([0x7F]) + uvarint(3) + text("wrong mesh")).hex()},
    ]
    path = pathlib.Path(__file__).resolve().parents[2] / "Specs/vectors/wire-v1.json"
    rendered = json.dumps(out, indent=2) + "\n"
    if "--check" in sys.argv:
        if path.read_text() != rendered:
            sys.exit(f"{path} differs from what this implementation produces")
        print(f"{path}: matches")
        return
    path.write_text(rendered)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
