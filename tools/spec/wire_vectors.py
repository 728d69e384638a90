#!/usr/bin/env python3
"""An independent implementation of parts of Specs/wire.md (Python standard library + `cryptography`).

Writes Specs/vectors/wire-v1.json: mesh ids, both sides' Hello and Auth frames with fixed keys and challenges,
the transcript hash, the private-mesh session keys, a few message frames (with the edges of the Error message's
truncation), LAN announcement datagrams, and sealed frames of a secret stream with a fixed key and header (its
own XChaCha20-Poly1305 secretstream, not libsodium's). KindlingWireTests and KindlingMeshTests check them.
Usage: python3 tools/spec/wire_vectors.py [--check]
"""
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from speclib import uvarint, text, write_vectors

RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


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


def truncated_utf8(message, limit):
    """Specs/wire.md, Error: the longest prefix of at most `limit` UTF-8 bytes that ends on a scalar boundary."""
    b = message.encode()
    if len(b) <= limit:
        return message
    end = limit
    while end > 0 and b[end] & 0xC0 == 0x80:
        end -= 1
    return b[:end].decode()


def lan_datagram(mesh_id, node_public, port, secret=None):
    """Specs/wire.md, LAN discovery: magic, version, mesh id, node id, port (big-endian), keyed tag if private."""
    body = b"KNDL-LAN" + bytes([1]) + mesh_id + node_public + port.to_bytes(2, "big")
    return body + (b2b(body, key=secret) if secret is not None else b"")


def _rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def hchacha20(key, nonce16):
    """HChaCha20 (draft-irtf-cfrg-xchacha, section 2.2): 20 ChaCha rounds, no feed-forward, words 0-3 and 12-15."""
    x = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    x += [int.from_bytes(key[i:i + 4], "little") for i in range(0, 32, 4)]
    x += [int.from_bytes(nonce16[i:i + 4], "little") for i in range(0, 16, 4)]

    def quarter(a, b, c, d):
        x[a] = (x[a] + x[b]) & 0xFFFFFFFF; x[d] = _rotl(x[d] ^ x[a], 16)
        x[c] = (x[c] + x[d]) & 0xFFFFFFFF; x[b] = _rotl(x[b] ^ x[c], 12)
        x[a] = (x[a] + x[b]) & 0xFFFFFFFF; x[d] = _rotl(x[d] ^ x[a], 8)
        x[c] = (x[c] + x[d]) & 0xFFFFFFFF; x[b] = _rotl(x[b] ^ x[c], 7)

    for _ in range(10):
        quarter(0, 4, 8, 12); quarter(1, 5, 9, 13); quarter(2, 6, 10, 14); quarter(3, 7, 11, 15)
        quarter(0, 5, 10, 15); quarter(1, 6, 11, 12); quarter(2, 7, 8, 13); quarter(3, 4, 9, 14)
    return b"".join(w.to_bytes(4, "little") for w in x[0:4] + x[12:16])


def chacha20_ietf_xor(key, nonce12, counter, data):
    encryptor = Cipher(algorithms.ChaCha20(key, counter.to_bytes(4, "little") + nonce12), mode=None).encryptor()
    return encryptor.update(data) + encryptor.finalize()


class SecretStreamPush:
    """The sending half of crypto_secretstream_xchacha20poly1305 with a given (not random) header, tag 0 (message).

    State: a subkey HChaCha20(key, header[0:16]) and a 12-byte nonce, a 32-bit little-endian counter from 1 then
    header[16:24]. Each message: Poly1305 keyed by the block at counter 0 over the (empty) associated data, the
    64-byte block holding the encrypted tag (counter 1), the ciphertext (counter 2 on), padding of len(m) % 16
    zero bytes (libsodium's formula), and both lengths; the output is the encrypted tag byte, the ciphertext and
    the 16-byte MAC. Then the nonce's last 8 bytes are XORed with the MAC's first 8 and the counter increments.
    """

    def __init__(self, key, header):
        self.key = hchacha20(key, header[:16])
        self.counter = 1
        self.inonce = bytearray(header[16:24])

    def push(self, message, tag=0):
        nonce = self.counter.to_bytes(4, "little") + bytes(self.inonce)
        poly_key = chacha20_ietf_xor(self.key, nonce, 0, bytes(64))[:32]
        block = chacha20_ietf_xor(self.key, nonce, 1, bytes([tag]) + bytes(63))
        ciphertext = chacha20_ietf_xor(self.key, nonce, 2, message)
        mac_input = block + ciphertext + bytes(len(message) % 16)
        mac_input += (0).to_bytes(8, "little") + (64 + len(message)).to_bytes(8, "little")
        mac = Poly1305.generate_tag(poly_key, mac_input)
        for i in range(8):
            self.inonce[i] ^= mac[i]
        self.counter = (self.counter + 1) & 0xFFFFFFFF
        assert self.counter != 0, "a rekey is not implemented (never reached by the vectors)"
        return block[:1] + ciphertext + mac


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
        {"message": "noChunk request 0 chunk 11..11 notHeld",
         "hex": frame(bytes([0x24]) + uvarint(0) + chunk + b"\x00").hex()},
        {"message": "haveChunks manifest 11..11 indices 0 4194303 (the largest index)",
         "hex": frame(bytes([0x12]) + chunk + uvarint(2) + uvarint(0) + uvarint(4194303)).hex()},
        # Trust document messages (extension types: a node that predates them skips them).
        {"message": "trustVersion 300", "hex": frame(bytes([0x80]) + uvarint(300)).hex()},
        {"message": "getTrust version 0 (the newest)", "hex": frame(bytes([0x81]) + uvarint(0)).hex()},
        {"message": "trustDocument version 2 bytes 01 02 03",
         "hex": frame(bytes([0x82]) + uvarint(2) + uvarint(3) + b"\x01\x02\x03").hex()},
        {"message": "trustDocument version 5 not held (no bytes)",
         "hex": frame(bytes([0x82]) + uvarint(5) + uvarint(0)).hex()},
    ]
    # Frames a decoder must refuse: an index at the manifest limit, an undefined NoChunk reason, a message over
    # its limit (what the Error encoder produced before it cut on scalar boundaries), an overlong varint.
    out["malformedFrames"] = [
        {"message": "haveChunks index 4194304", "hex": frame(bytes([0x12]) + chunk + uvarint(1) + uvarint(4194304)).hex()},
        {"message": "noChunk reason 2", "hex": frame(bytes([0x24]) + uvarint(7) + chunk + b"\x02").hex()},
        {"message": "error with a 514-byte message",
         "hex": frame(bytes([0x7F]) + uvarint(1) + text("a" * 511 + "\ufffd")).hex()},
        {"message": "ping with a non-minimal varint", "hex": frame(bytes([0x40]) + b"\x80\x00").hex()},
        {"message": "trustDocument of 1 MiB + 1 bytes (over the limit)",
         "hex": frame(bytes([0x82]) + uvarint(1) + uvarint((1 << 20) + 1)).hex()},
        {"message": "trustVersion with trailing bytes", "hex": frame(bytes([0x80]) + uvarint(1) + b"\x00").hex()},
    ]
    # Extension types a node does not know (0x80 and above) are skipped, not refused.
    out["unknownExtensionFrames"] = [
        {"message": "type 0xfe with a payload", "hex": frame(bytes([0xFE]) + b"anything").hex()},
        {"message": "type 0x9f empty", "hex": frame(bytes([0x9F])).hex()},
    ]
    # Error messages longer than 512 UTF-8 bytes: the sender cuts on a scalar boundary at or below the limit.
    out["errorTruncation"] = []
    for message in ("a" * 511 + "\u00e9", "a" * 510 + "\u20ac", "a" * 509 + "\U0001F600x", "a" * 512 + "b",
                    "\u00e9" * 300):
        sent = truncated_utf8(message, 512)
        out["errorTruncation"].append(
            {"message": message, "code": 1, "hex": frame(bytes([0x7F]) + uvarint(1) + text(sent)).hex()})
    # LAN announcements (UDP datagrams, no length prefix).
    node_public = sides["responder"]["node_key"].public_key().public_bytes(*RAW)
    out["lan"] = [
        {"mesh": "open", "nodeId": "ed25519:" + node_public.hex(), "port": 7342,
         "datagram": lan_datagram(open_id, node_public, 7342).hex()},
        {"mesh": "private", "nodeId": "ed25519:" + node_public.hex(), "port": 65535,
         "datagram": lan_datagram(private_id, node_public, 65535, secret).hex()},
    ]
    # Sealed frames: libsodium makes the header at random; here it is fixed, and the receiver must open these
    # ciphertexts in this order.
    stream_key = bytes(range(32))
    stream_header = bytes(range(200, 224))
    pusher = SecretStreamPush(stream_key, stream_header)
    plain_frames = [bytes([0x40]) + uvarint(300), b"", bytes([0x22]) + uvarint(7) + chunk,
                    bytes([0x7F]) + uvarint(3) + text("wrong mesh"), bytes(range(256)) * 3]
    out["sealed"] = {"key": stream_key.hex(), "header": stream_header.hex(), "frames": []}
    for plain in plain_frames:
        sealed = pusher.push(plain)
        out["sealed"]["frames"].append({"plain": plain.hex(), "sealed": sealed.hex(), "frame": frame(sealed).hex()})
    write_vectors("wire-v1.json", out)


if __name__ == "__main__":
    main()
