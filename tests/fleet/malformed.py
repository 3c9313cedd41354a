"""A seeded generator of malformed protocol messages (each checked to be refused by the codec)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from importlib import resources

from edgefleet import protocol

_PKG = resources.files("edgefleet.protocol")
_VECTORS = json.loads(_PKG.joinpath("vectors.json").read_text())
GOLDEN = [(v["kind"], _PKG.joinpath(v["file"]).read_bytes()) for v in _VECTORS["valid"]
          if v["kind"] in protocol.INGEST_KINDS]
_ODD = [None, True, False, 0, -1, 1.5, 2**33, -2**63, 1e308, "", "x" * 300, "é", [], {}, [1, 2], {"a": 1},
        "9f3a0c17", "online", 4294967296, -0.0]


def _mutate_json(rng: random.Random, obj):
    """Replace, delete or add one thing somewhere in a JSON value."""
    paths = []

    def walk(x, path):
        paths.append(path)
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, path + (k,))
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, path + (i,))
    walk(obj, ())
    path = rng.choice(paths[1:] or [()])
    if not path:
        return rng.choice(_ODD)
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    op = rng.random()
    if op < 0.5:
        parent[path[-1]] = rng.choice(_ODD)
    elif op < 0.8:
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[rng.choice(["extra", "V", "seq ", "res"]) + str(rng.randint(0, 9))] = rng.choice(_ODD)
    else:
        parent.append(rng.choice(_ODD))
    return obj


def _candidate(rng: random.Random, max_payload: int) -> tuple[str, bytes]:
    kind, gold = rng.choice(GOLDEN)
    device = f"fz{rng.randint(0, 99)}"
    r = rng.random()
    if r < 0.10:
        payload = rng.randbytes(rng.randint(0, 120))
    elif r < 0.25:
        payload = gold[: rng.randint(0, len(gold) - 1)]
    elif r < 0.40:
        b = bytearray(gold)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        payload = bytes(b)
    elif r < 0.80:
        payload = json.dumps(_mutate_json(rng, json.loads(gold)), separators=(",", ":")).encode()
    elif r < 0.85:
        payload = gold.replace(b'"v":1', rng.choice([b'"v":NaN', b'"v":Infinity', b'"v":-Infinity', b'"v":1e999']))
    elif r < 0.855:
        depth = rng.randint(1500, 3000)  # beyond the recursion limit from any thread: always a json error
        payload = b"[" * depth + b"]" * depth
    elif r < 0.93:  # a valid payload of another kind
        kind = rng.choice([k for k in protocol.INGEST_KINDS if k != kind])
        payload = gold
    elif r < 0.97:  # a topic the codec refuses
        device = rng.choice(["bad!", "a" * 65, "sp ace", "", "ü"])
        payload = gold
    elif r < 0.99995:
        payload = gold[:5] + rng.choice([b"\xc3\x28", b"\xff", b"\xed\xa0\x80"]) + gold[5:]
    else:
        payload = b"[" + b"1," * (max_payload // 2) + b"1]"
    return f"ef/v1/{device}/{kind}", payload


def malformed(n: int, seed: int = 0, max_payload: int = protocol.MAX_PAYLOAD) -> Iterator[tuple[str, bytes]]:
    """n (topic, payload) pairs, every one refused by protocol.decode_message."""
    rng = random.Random(seed)
    made = 0
    while made < n:
        topic, payload = _candidate(rng, max_payload)
        try:
            protocol.decode_message(topic, payload, max_size=max_payload)
        except protocol.ProtocolError:
            made += 1
            yield topic, payload
