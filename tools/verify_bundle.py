#!/usr/bin/env python3
"""Verifies a Tollgate evidence bundle with nothing but Python's standard
library, independently of the server's code.

    python3 tools/verify_bundle.py BUNDLE_DIR --key 'NAME+KEYID+BASE64KEY'

It re-implements, from docs/audit-format.md: the record encoding and its
canonical JSON, RFC 6962 Merkle hashing and RFC 9162 consistency
verification, the C2SP checkpoint in a signed note, and Ed25519 signature
verification (RFC 8032). Exit status 0 and a line starting with "OK" when
the bundle verifies; 1 and a line starting with "FAILED" naming the first
problem otherwise.
"""

import argparse
import base64
import hashlib
import json
import os
import sys

RECORD_TAG = b"tollgate-audit-record-v1"


class Failed(Exception):
    pass


# --- canonical JSON and the record encoding ---------------------------------

def canonical(value):
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-8"))
        return "{" + ",".join(canonical_string(k) + ":" + canonical(v) for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, str):
        return canonical_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # serde_json writes the shortest round-trip form with a bare
        # exponent (1e16, 1.5e-7); Python writes 1e+16 and 1.5e-07.
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            sign = "-" if exponent.startswith("-") else ""
            text = mantissa + "e" + sign + exponent.lstrip("+-").lstrip("0")
        return text
    raise Failed("unsupported JSON value %r" % (value,))


def canonical_string(text):
    return json.dumps(text, ensure_ascii=False)


def encode(record):
    out = bytearray(RECORD_TAG)
    fields = [
        str(record["position"]),
        record["event_id"],
        record["aggregate_type"],
        record["aggregate_id"],
        str(record["sequence"]),
        record["event_type"],
        record["event_version"],
        canonical(record["payload"]),
        canonical(record["metadata"]),
    ]
    for field in fields:
        data = field.encode("utf-8")
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


# --- RFC 6962 Merkle tree ----------------------------------------------------

def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def frontier_root(nodes):
    if not nodes:
        return hashlib.sha256(b"").digest()
    root = nodes[-1]
    for left in reversed(nodes[:-1]):
        root = node_hash(left, root)
    return root


def frontier_push(size, nodes, leaf):
    node = leaf
    while size & 1:
        node = node_hash(nodes.pop(), node)
        size >>= 1
    nodes.append(node)


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162, section 2.1.4.2."""
    if first > second:
        raise Failed("the proof's range is larger than the checkpoint's tree")
    if first == second:
        if proof or first_root != second_root:
            raise Failed("the records do not lead to the signed root")
        return
    if not proof:
        raise Failed("the consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Failed("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_root or sr != second_root:
        raise Failed("the proof does not lead to the signed root")


# --- Ed25519 (RFC 8032, verification only) -----------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def point_add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_mul(scalar, point):
    result = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = point_add(result, point)
        point = point_add(point, point)
        scalar >>= 1
    return result


def point_equal(a, b):
    x1, y1, z1, _ = a
    x2, y2, z2, _ = b
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def decompress(data):
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


BASE = decompress(bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666"))


def ed25519_verify(public, message, signature):
    if len(signature) != 64:
        return False
    a = decompress(public)
    r = decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    return point_equal(point_mul(s, BASE), point_add(r, point_mul(h, a)))


# --- signed note and checkpoint ---------------------------------------------

def parse_key(text):
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise Failed("the key is not NAME+KEYID+KEY")
    name, key_id, blob = parts
    raw = base64.b64decode(blob)
    if len(raw) != 33 or raw[0] != 1:
        raise Failed("the key is not an Ed25519 verifier key")
    public = raw[1:]
    expected = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public).digest()[:4]
    if expected.hex() != key_id:
        raise Failed("the key id does not match the key")
    return name, expected, public


def open_checkpoint(note, key):
    name, key_id, public = key
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Failed("the checkpoint is not a signed note")
    text, signatures = note[: split + 1], note[split + 2:]
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            raise Failed("malformed signature line")
        signer, _, blob = line[2:].partition(" ")
        raw = base64.b64decode(blob)
        if signer == name and raw[:4] == key_id:
            if ed25519_verify(public, text.encode("utf-8"), raw[4:]):
                lines = text.split("\n")
                return lines[0], int(lines[1]), base64.b64decode(lines[2])
            raise Failed("the checkpoint is not signed by the trusted key: "
                         "the signature by %s does not verify" % name)
    raise Failed("the checkpoint is not signed by the trusted key")


# --- the bundle --------------------------------------------------------------

def verify(bundle, key_text):
    read = lambda name: open(os.path.join(bundle, name), encoding="utf-8").read()
    origin, size, root = open_checkpoint(read("checkpoint.txt"), parse_key(key_text))
    proof = json.loads(read("proof.json"))
    first, last = proof["first"], proof["last"]
    if proof["tree_size"] != size:
        raise Failed("the proof is for a tree of %d records, the checkpoint for %d"
                     % (proof["tree_size"], size))
    if not (1 <= first <= last <= size) or len(proof["leaves"]) != last - first + 1:
        raise Failed("the proof does not fit its range")
    nodes = [bytes.fromhex(h) for h in proof["left"]]
    if len(nodes) != bin(first - 1).count("1"):
        raise Failed("the left subtrees do not fit the range")
    leaves = [bytes.fromhex(h) for h in proof["leaves"]]
    count = first - 1
    for leaf in leaves:
        frontier_push(count, nodes, leaf)
        count += 1
    verify_consistency(last, size, frontier_root(nodes), root,
                       [bytes.fromhex(h) for h in proof["consistency"]])
    records = [json.loads(line) for line in read("records.ndjson").splitlines() if line]
    positions = {r["position"] for r in records}
    for i, expected in enumerate(range(first, last + 1)):
        if i >= len(records):
            raise Failed("record %d is missing from the bundle" % expected)
        record = records[i]
        if record["position"] != expected:
            if expected in positions:
                raise Failed("record %d is out of place (expected record %d)"
                             % (record["position"], expected))
            raise Failed("record %d is missing from the bundle" % expected)
        if leaf_hash(encode(record)) != leaves[i]:
            raise Failed("record %d was altered: it is not the record the log committed to"
                         % expected)
    if len(records) > last - first + 1:
        raise Failed("record %d is out of place" % records[last - first + 1]["position"])
    return origin, size, first, last


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--key", required=True, help="the trusted NAME+KEYID+KEY")
    args = parser.parse_args()
    try:
        origin, size, first, last = verify(args.bundle, args.key)
    except (Failed, ValueError, KeyError, OSError) as err:
        print("FAILED: %s" % err)
        return 1
    print("OK: records %d..=%d (%d) are in the log %s of %d records"
          % (first, last, last - first + 1, origin, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
