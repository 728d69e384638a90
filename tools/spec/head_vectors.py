#!/usr/bin/env python3
"""An independent implementation of Specs/freshness.md, head records (Python standard library + `cryptography`).

It writes Specs/vectors/head-record-v1.json: records with their canonical bytes, signing input, signature and
encoded bytes, the outcome of the acceptance rule for a policy, a held record and a candidate, and encodings a
reader must refuse. The Swift tests check it byte for byte (Tests/KindlingManifestTests/HeadRecordTests.swift).
Usage: python3 tools/spec/head_vectors.py [--check]
"""
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from speclib import iso, key_bytes, public_text, seconds, text, uvarint, write_vectors

DOMAIN = b"kindling-head-record-v1\x00"
MAGIC = b"KNDH"
CLOCK_SKEW = 600


def canonical(record):
    """The canonical encoding of a head record (Specs/freshness.md, "Canonical encoding")."""
    out = bytearray(MAGIC + uvarint(1) + text(record["repository"]) + key_bytes(record["publisher"]))
    out += uvarint(record["sequence"]) + uvarint(seconds(record["issued"])) + uvarint(seconds(record["expires"]))
    entries = sorted(record["entries"], key=lambda e: (e["branch"].encode("utf-8"), e["profile"].encode("utf-8")))
    out += uvarint(len(entries))
    for e in entries:
        out += text(e["branch"]) + text(e["profile"]) + text(e["commit"]) + bytes.fromhex(e["manifest"])
    return bytes(out)


def glob_match(pattern, name):
    """`*` any run without '/', `**` any run, `?` one character but '/' (Specs/trust.md)."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            regex += ".*"
            i += 2
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "[^/]"
            i += 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.fullmatch(regex, name, re.S) is not None


def evaluate(candidate, held, policy, now):
    """The acceptance rule, in its order; returns the outcome's name."""
    record = candidate["record"]
    issued = seconds(record["issued"])
    key = next((k for k in policy if k["publicKey"] == record["publisher"]), None)
    if key is None or key.get("revoked", False):
        return "untrusted"
    if not any(glob_match(g, record["repository"]) for g in key["repositories"]):
        return "untrusted"
    if "validFrom" in key and issued < seconds(key["validFrom"]):
        return "untrusted"
    if "validUntil" in key and issued > seconds(key["validUntil"]):
        return "untrusted"
    try:
        Ed25519PublicKey.from_public_bytes(key_bytes(record["publisher"])).verify(
            bytes.fromhex(candidate["signature"]), DOMAIN + canonical(record))
    except InvalidSignature:
        return "badSignature"
    if issued - now > CLOCK_SKEW:
        return "issuedInFuture"
    if seconds(record["expires"]) <= now:
        return "expired"
    if held is None:
        return "accepted"
    held_sequence = held["record"]["sequence"]
    if record["sequence"] < held_sequence:
        return "rollback"
    if record["sequence"] == held_sequence:
        same = canonical(record) == canonical(held["record"]) and candidate["signature"] == held["signature"]
        return "alreadyHeld" if same else "conflictingSequence"
    return "accepted"


def main():
    names = ("bors", "other", "revoked")
    seeds = {name: bytes([0x40 + index] * 32) for index, name in enumerate(names)}
    private = {name: Ed25519PrivateKey.from_private_bytes(seed) for name, seed in seeds.items()}
    pub = {name: public_text(key) for name, key in private.items()}
    now = seconds("2026-06-01T00:00:00Z")
    policy = [
        {"name": "bors", "publicKey": pub["bors"], "repositories": ["rust-lang/*"],
         "validUntil": "2027-01-01T00:00:00Z"},
        {"name": "old", "publicKey": pub["revoked"], "repositories": ["**"], "revoked": True},
    ]

    def entry(branch, profile, commit, fill):
        return {"branch": branch, "profile": profile, "commit": commit, "manifest": fill * 32}

    master = entry("master", "dev", "a" * 40, "11")
    master_release = entry("master", "release", "a" * 40, "22")
    auto = entry("auto", "dev", "b" * 40, "33")
    master_newer = entry("master", "dev", "c" * 40, "44")
    unicode_branch = entry("feature/\u00e9t\u00e9", "dev", "d" * 40, "55")

    def record(sequence, entries, signer="bors", repository="rust-lang/rust", issued="2026-05-31T12:00:00Z",
               expires="2026-06-07T12:00:00Z"):
        return {"repository": repository, "publisher": pub[signer], "sequence": sequence, "issued": issued,
                "expires": expires, "entries": entries}

    contents = {
        "seq5": (record(5, [master, auto]), "bors"),
        "seq6": (record(6, [master_newer, master_release, auto]), "bors"),
        "seq6-other": (record(6, [master]), "bors"),
        "seq4": (record(4, [master]), "bors"),
        "empty": (record(1, []), "bors"),
        "unicode-branch": (record(7, [unicode_branch]), "bors"),
        "expired": (record(9, [master], issued="2026-05-20T00:00:00Z", expires="2026-05-27T00:00:00Z"), "bors"),
        "future": (record(9, [master], issued="2026-06-01T00:20:00Z", expires="2026-06-08T00:00:00Z"), "bors"),
        "other-repository": (record(9, [master], repository="someone/else"), "bors"),
        "unknown-key": (record(9, [master], signer="other"), "other"),
        "revoked-key": (record(9, [master], signer="revoked"), "revoked"),
        "after-validity": (record(9, [master], issued="2027-01-02T00:00:00Z", expires="2027-01-09T00:00:00Z"),
                           "bors"),
        # Names bors, signed by another key: a forgery under a trusted key.
        "forged": (record(9, [master]), "other"),
    }
    records = []
    by_name = {}
    for name, (body, signer) in contents.items():
        encoded = canonical(body)
        signature = private[signer].sign(DOMAIN + encoded)
        records.append({
            "name": name,
            "record": body,
            "canonicalHex": encoded.hex(),
            "signingInputHex": (DOMAIN + encoded).hex(),
            "signatureHex": signature.hex(),
            "encodedHex": (encoded + signature).hex(),
        })
        by_name[name] = {"record": body, "signature": signature.hex()}

    updates = []
    for candidate, held in [
        ("seq5", None), ("seq6", "seq5"), ("seq5", "seq6"), ("seq5", "seq5"), ("seq6-other", "seq6"),
        ("seq4", "seq5"), ("empty", None), ("unicode-branch", "seq6"), ("expired", "seq6"), ("future", None),
        ("other-repository", None), ("unknown-key", None), ("revoked-key", None), ("after-validity", None),
        ("forged", "seq5"),
    ]:
        updates.append({"candidate": candidate, "held": held,
                        "outcome": evaluate(by_name[candidate], by_name.get(held), policy, now)})

    seq5 = canonical(contents["seq5"][0])
    signature = bytes.fromhex(by_name["seq5"]["signature"])
    repo_len = len("rust-lang/rust")
    sequence_at = 5 + 1 + repo_len + 32
    assert seq5[sequence_at] == 5
    issued_len = len(uvarint(seconds(contents["seq5"][0]["issued"])))
    expires_at = sequence_at + 1 + issued_len
    count_at = expires_at + len(uvarint(seconds(contents["seq5"][0]["expires"])))
    assert seq5[count_at] == 2
    first_entry = count_at + 1  # "auto" sorts before "master"
    first_len = 1 + 4 + 1 + 3 + 1 + 40 + 32
    second_entry = first_entry + first_len
    assert seq5[first_entry:first_entry + 5] == b"\x04auto"
    bad = [
        ("trailing byte", seq5 + signature + b"\x00"),
        ("no signature", seq5),
        ("truncated signature", seq5 + signature[:-1]),
        ("wrong magic", b"KNDX" + seq5[4:] + signature),
        ("format version 2", seq5[:4] + b"\x02" + seq5[5:] + signature),
        ("sequence 0", seq5[:sequence_at] + b"\x00" + seq5[sequence_at + 1:] + signature),
        ("sequence not minimally encoded", seq5[:sequence_at] + b"\x85\x00" + seq5[sequence_at + 1:] + signature),
        ("expires not after issued", seq5[:expires_at] + uvarint(seconds(contents["seq5"][0]["issued"]))
         + seq5[count_at:] + signature),
        ("entries not ascending", seq5[:first_entry] + seq5[second_entry:] + seq5[first_entry:second_entry]
         + signature),
        ("entry repeated", seq5[:count_at] + b"\x02" + seq5[first_entry:second_entry] * 2 + signature),
        ("entry count beyond the data", seq5[:count_at] + b"\x03" + seq5[count_at + 1:] + signature),
        ("empty branch", seq5[:first_entry] + b"\x00" + seq5[first_entry + 5:] + signature),
        ("control character in branch", seq5[:first_entry] + b"\x04au\x1bo" + seq5[first_entry + 5:] + signature),
        ("space in commit", seq5[:first_entry + 9] + b"\x28" + b" " * 40 + seq5[first_entry + 50:] + signature),
        ("repository with an empty segment", seq5[:5] + text("rust-lang//ust") + seq5[6 + repo_len:] + signature),
        ("65 entries", seq5[:count_at] + b"\x41" + b"".join(
            text(f"b{i:03}") + text("dev") + text("a" * 40) + b"\x11" * 32 for i in range(65)) + signature),
    ]

    vector = {
        "description": "Specs/freshness.md test vectors: head records, their canonical bytes and signatures, the "
                       "acceptance rule's outcomes, and encodings a reader must refuse",
        "seeds": {name: seed.hex() for name, seed in seeds.items()},
        "publicKeys": pub,
        "now": iso(now),
        "allowedClockSkew": CLOCK_SKEW,
        "policy": policy,
        "records": records,
        "updates": updates,
        "refused": [{"what": what, "hex": data.hex()} for what, data in bad],
    }
    write_vectors("head-record-v1.json", vector)


if __name__ == "__main__":
    main()
