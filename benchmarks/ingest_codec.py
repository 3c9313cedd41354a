"""Protocol codec speed: decode+validate of result messages with the generated checker vs
`jsonschema`, and canonical encode. Writes benchmarks/results/ingest_codec.json.

    .venv/bin/python benchmarks/ingest_codec.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import jsonschema  # noqa: E402

from _report import write_report  # noqa: E402
from edgefleet import protocol  # noqa: E402


def rate(fn, items, min_s: float = 1.0) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s:
        for x in items:
            fn(x)
        n += len(items)
    return n / (time.perf_counter() - t0)


def main() -> int:
    report: dict = {"benchmark": "ingest_codec", "messages_per_s": {}}
    validator = jsonschema.Draft202012Validator(protocol.schema("result"))
    for per_msg in (1, 10, 100):
        res = [{"seq": i, "ts": 1767225600000 + i, "score": 0.0123 * (i + 1), "anom": False, "inf_us": 400}
               for i in range(per_msg)]
        body = protocol.result_message("9f3a0c17", 3, 0.05, res)
        payloads = [protocol.encode("result", body)] * 200
        ours = rate(lambda p: protocol.decode("result", p), payloads)
        ref = rate(lambda p: validator.validate(json.loads(p)), payloads, 0.5)
        enc = rate(lambda b: protocol.encode("result", b), [body] * 200)
        report["messages_per_s"][f"{per_msg}_results"] = {
            "decode_validate": round(ours), "jsonschema_validate": round(ref), "speedup": round(ours / ref, 1),
            "encode": round(enc), "payload_bytes": len(payloads[0])}
        print(f"{per_msg:3d} results/msg: decode+validate {ours:8.0f} msg/s ({ours * per_msg:9.0f} results/s), "
              f"jsonschema {ref:7.0f} msg/s (x{ours / ref:.1f}), encode {enc:7.0f} msg/s, {len(payloads[0])} B")
    write_report("ingest_codec", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
