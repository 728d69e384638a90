"""What the independent Python implementations of the specs share (encoding primitives and writing the vector
files); each spec's own encoding stays in its script."""
import calendar
import json
import pathlib
import re
import sys
import time

from cryptography.hazmat.primitives import serialization

TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$")


def uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def text(s):
    b = s.encode("utf-8")
    return uvarint(len(b)) + b


def seconds(iso):
    """ISO 8601 in whole seconds, UTC (`2026-01-31T00:00:00Z`) to seconds since the epoch."""
    match = TIME.match(iso)
    if not match:
        raise ValueError(f"not a whole-second UTC time: {iso}")
    return calendar.timegm(tuple(int(g) for g in match.groups()) + (0, 0, 0))


def iso(secs):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))


def key_bytes(key_text):
    assert key_text.startswith("ed25519:") and len(key_text) == 8 + 64
    return bytes.fromhex(key_text[8:])


def public_text(private):
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + raw.hex()


def write_vectors(name, vector):
    """Writes Specs/vectors/NAME, or with --check only compares it with what this implementation produces."""
    path = pathlib.Path(__file__).resolve().parents[2] / "Specs/vectors" / name
    rendered = json.dumps(vector, indent=2) + "\n"
    if "--check" in sys.argv:
        if path.read_text() != rendered:
            sys.exit(f"{path} differs from what this implementation produces")
        print(f"{path}: matches")
        return
    path.write_text(rendered)
    print(f"wrote {path}")
