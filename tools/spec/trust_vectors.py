#!/usr/bin/env python3
"""An independent implementation of Specs/trust.md, "Trust documents" (Python standard library + `cryptography`).

It writes Specs/vectors/trust-document-v1.json: documents with their canonical bytes, signing input, signatures
and file, the outcome of the update rules for pairs of them, and inputs a reader must refuse. The Swift tests check
it byte for byte (Tests/KindlingManifestTests/TrustVectorTests.swift).
Usage: python3 tools/spec/trust_vectors.py [--check]
"""
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from speclib import iso, key_bytes, public_text, seconds, text, uvarint, write_vectors

DOMAIN = b"kindling-trust-document-v1\x00"
MAGIC = b"KNDT"
def by_utf8(strings):
    return sorted(strings, key=lambda s: s.encode("utf-8"))


def canonical(signed):
    """The canonical encoding of a document's `signed` object (Specs/trust.md, "Canonical encoding")."""
    out = bytearray(MAGIC + uvarint(1) + uvarint(signed["version"]) + uvarint(seconds(signed["expires"])))
    roots = sorted(key_bytes(k) for k in signed["roots"]["keys"])
    out += uvarint(len(roots)) + b"".join(roots) + uvarint(signed["roots"]["threshold"])
    keys = sorted(signed["keys"], key=lambda k: k["name"].encode("utf-8"))
    out += uvarint(len(keys))
    for k in keys:
        out += text(k["name"]) + key_bytes(k["publicKey"])
        globs = by_utf8(k["repositories"])
        out += uvarint(len(globs)) + b"".join(text(g) for g in globs)
        for field in ("validFrom", "validUntil"):
            out += (b"\x01" + uvarint(seconds(k[field]))) if field in k else b"\x00"
        out += b"\x01" if k.get("revoked", False) else b"\x00"
    withdrawn = sorted(bytes.fromhex(w) for w in signed["withdrawn"])
    out += uvarint(len(withdrawn)) + b"".join(withdrawn)
    return bytes(out)


def valid_signers(signed, signatures, roots):
    """Distinct root keys with a verifying signature: each key counts once, non-root keys not at all."""
    message = DOMAIN + canonical(signed)
    signers = set()
    for s in signatures:
        if s["key"] not in roots["keys"] or s["key"] in signers:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(key_bytes(s["key"])).verify(bytes.fromhex(s["signature"]), message)
            signers.add(s["key"])
        except InvalidSignature:
            pass
    return signers


def same_roots(a, b):
    return sorted(a["keys"]) == sorted(b["keys"]) and a["threshold"] == b["threshold"]


def evaluate(candidate, current, configured, now):
    """The update rules of Specs/trust.md, in their order; returns the outcome's name."""
    doc = candidate["signed"]
    if current is not None:
        held = current["signed"]["version"]
        if doc["version"] < held:
            return "rollback"
        if doc["version"] == held:
            return "alreadyCurrent" if canonical(doc) == canonical(current["signed"]) else "conflictingVersion"
    governing = current["signed"]["roots"] if current is not None else configured
    sigs = candidate["signatures"]
    if same_roots(doc["roots"], governing):
        if len(valid_signers(doc, sigs, governing)) < governing["threshold"]:
            return "belowThreshold"
        if seconds(doc["expires"]) <= now:
            return "expired"
        return "accepted"
    if len(valid_signers(doc, sigs, doc["roots"])) < doc["roots"]["threshold"]:
        return "belowThreshold"
    if current is None:
        return f"needsIntermediate {doc['version'] - 1}" if doc["version"] > 1 else "notConfiguredRoots"
    if doc["version"] != current["signed"]["version"] + 1:
        return f"needsIntermediate {current['signed']['version'] + 1}"
    if len(valid_signers(doc, sigs, governing)) < governing["threshold"]:
        return "belowThreshold"
    return "accepted"


def main():
    names = ("a", "b", "c", "x", "y", "bors", "bors2")
    seeds = {name: bytes([index + 1] * 32) for index, name in enumerate(names)}
    private = {name: Ed25519PrivateKey.from_private_bytes(seed) for name, seed in seeds.items()}
    pub = {name: public_text(key) for name, key in private.items()}
    now = seconds("2026-06-01T00:00:00Z")
    old_roots = {"keys": [pub["a"], pub["b"], pub["c"]], "threshold": 2}
    new_roots = {"keys": [pub["x"], pub["y"]], "threshold": 2}

    def signed(version, roots, expires="2026-09-01T00:00:00Z", keys=None, withdrawn=()):
        return {"version": version, "expires": expires, "roots": roots, "keys": keys or [],
                "withdrawn": list(withdrawn)}

    bors = {"name": "bors", "publicKey": pub["bors"], "repositories": ["rust-lang/*"]}
    bors_revoked = dict(bors, revoked=True)
    bors2 = {"name": "bors-2026", "publicKey": pub["bors2"], "repositories": ["rust-lang/*", "**", "a/?"],
             "validFrom": "2026-01-01T00:00:00Z", "validUntil": "2027-01-01T00:00:00Z"}
    withdrawn = ["ff" * 32, "00" * 31 + "01"]
    contents = {
        "v1": signed(1, old_roots, keys=[bors]),
        "v2": signed(2, old_roots, keys=[bors2, bors_revoked], withdrawn=withdrawn),
        "v3-rotation": signed(3, new_roots, keys=[bors2, bors_revoked], withdrawn=withdrawn),
        "v3-other": signed(3, new_roots, keys=[bors2], withdrawn=withdrawn),
        "v4-expired": signed(4, new_roots, expires="2026-05-31T23:59:59Z", keys=[bors2]),
        "v1-foreign": signed(1, new_roots),
    }
    # Who signs which document; a name may repeat (it counts once), and "bors" is no root.
    signings = [
        ("v1", "v1", ["a", "c"]),
        ("v2", "v2", ["b", "a"]),
        ("v2-one-root", "v2", ["a"]),
        ("v2-duplicates", "v2", ["a", "a", "bors"]),
        ("v2-resigned", "v2", ["c"]),
        ("v3-rotation", "v3-rotation", ["a", "b", "x", "y"]),
        ("v3-rotation-new-only", "v3-rotation", ["x", "y"]),
        ("v3-other", "v3-other", ["x", "y"]),
        ("v4-expired", "v4-expired", ["x", "y"]),
        ("v1-foreign", "v1-foreign", ["x", "y"]),
    ]
    documents = []
    by_name = {}
    for name, content, signers in signings:
        body = contents[content]
        encoded = canonical(body)
        signatures = [{"key": pub[s], "signature": private[s].sign(DOMAIN + encoded).hex()} for s in signers]
        entry = {
            "name": name,
            "signers": signers,
            "canonicalHex": encoded.hex(),
            "signingInputHex": (DOMAIN + encoded).hex(),
            "file": {"kindling-trust-document": 1, "signed": body, "signatures": signatures},
        }
        documents.append(entry)
        by_name[name] = {"signed": body, "signatures": signatures}

    updates = []
    for candidate, current in [
        ("v1", None), ("v2", "v1"), ("v1", "v2"), ("v2-resigned", "v2"), ("v2-one-root", "v1"),
        ("v2-duplicates", "v1"), ("v3-rotation", "v2"), ("v3-rotation-new-only", "v2"), ("v3-rotation", "v1"),
        ("v3-rotation", None), ("v3-other", "v3-rotation"), ("v4-expired", "v3-rotation"), ("v1-foreign", None),
        ("v2", None),
    ]:
        outcome = evaluate(by_name[candidate], by_name.get(current), old_roots, now)
        updates.append({"candidate": candidate, "current": current, "outcome": outcome})

    # Canonical bytes a decoder must refuse, each made from v2's by one change.
    v2 = canonical(contents["v2"])
    version_at = 5
    assert v2[version_at] == 2
    roots_at = 6 + len(uvarint(seconds(contents["v2"]["expires"])))
    threshold_at = roots_at + 1 + 3 * 32
    assert v2[roots_at] == 3 and v2[threshold_at] == 2
    withdrawn_at = len(v2) - 64
    bad_canonical = [
        ("trailing byte", v2 + b"\x00"),
        ("truncated", v2[:-1]),
        ("wrong magic", b"KNDX" + v2[4:]),
        ("format version 2", v2[:4] + b"\x02" + v2[5:]),
        ("version 0", v2[:version_at] + b"\x00" + v2[version_at + 1:]),
        ("version not minimally encoded", v2[:version_at] + b"\x82\x00" + v2[version_at + 1:]),
        ("threshold 0", v2[:threshold_at] + b"\x00" + v2[threshold_at + 1:]),
        ("threshold above the root count", v2[:threshold_at] + b"\x04" + v2[threshold_at + 1:]),
        ("root keys not ascending", v2[:roots_at + 1] + v2[roots_at + 33:roots_at + 65] + v2[roots_at + 1:roots_at + 33]
         + v2[roots_at + 65:]),
        ("withdrawn ids not ascending", v2[:withdrawn_at] + v2[-32:] + v2[withdrawn_at:withdrawn_at + 32]),
        ("revoked flag byte 2", v2[:withdrawn_at - 2] + b"\x02" + v2[withdrawn_at - 1:]),
    ]
    assert v2[withdrawn_at - 2] == 0  # the last key's revoked flag ("bors-2026" sorts after "bors")
    good_file = json.loads(json.dumps(documents[1]["file"]))

    def changed_file(change):
        copy = json.loads(json.dumps(good_file))
        change(copy)
        return json.dumps(copy)

    bad_files = [
        ("unknown field in signed", changed_file(lambda f: f["signed"].__setitem__("comment", "x"))),
        ("unknown top-level field", changed_file(lambda f: f.__setitem__("note", 1))),
        ("unknown field in a key", changed_file(lambda f: f["signed"]["keys"][0].__setitem__("scope", "all"))),
        ("unknown field in a signature", changed_file(lambda f: f["signatures"][0].__setitem__("by", "me"))),
        ("threshold 0", changed_file(lambda f: f["signed"]["roots"].__setitem__("threshold", 0))),
        ("a root key twice", changed_file(lambda f: f["signed"]["roots"]["keys"].append(pub["a"]))),
        ("two keys with one name", changed_file(
            lambda f: f["signed"]["keys"].append(dict(bors, publicKey=pub["x"])))),
        ("withdrawn twice", changed_file(lambda f: f["signed"]["withdrawn"].append("ff" * 32))),
        ("fractional expiry", changed_file(lambda f: f["signed"].__setitem__("expires", "2026-09-01T00:00:00.5Z"))),
        ("missing withdrawn", changed_file(lambda f: f["signed"].pop("withdrawn"))),
        ("short signature", changed_file(lambda f: f["signatures"][0].__setitem__("signature", "00" * 63))),
        ("format version 2", changed_file(lambda f: f.__setitem__("kindling-trust-document", 2))),
        ("version 0", changed_file(lambda f: f["signed"].__setitem__("version", 0))),
        ("no repositories", changed_file(lambda f: f["signed"]["keys"][0].__setitem__("repositories", []))),
        # Readers disagree on which of two equal names counts (Python: the last), so both are refused.
        ("a field twice", json.dumps(good_file).replace('"version": 2,', '"version": 2, "version": 3,', 1)),
    ]
    assert '"version": 3' in bad_files[-1][1]

    vector = {
        "description": "Specs/trust.md test vectors: trust documents, their canonical bytes and signatures, the "
                       "update rules' outcomes, and inputs a reader must refuse",
        "seeds": {name: seed.hex() for name, seed in seeds.items()},
        "publicKeys": pub,
        "now": iso(now),
        "configuredRoots": old_roots,
        "documents": documents,
        "updates": updates,
        "refusedCanonical": [{"what": what, "hex": data.hex()} for what, data in bad_canonical],
        "refusedFiles": [{"what": what, "text": data} for what, data in bad_files],
    }
    write_vectors("trust-document-v1.json", vector)


if __name__ == "__main__":
    main()
