"""What OTA authorization costs (docs/ota.md, "Authorization"): bytes a ticket and a keyset add to an
offer, and the time to sign a ticket (the OTA manager, once per device offered) and to check one
(the simulated node, once per offer), in Python with the `cryptography` package.

    .venv/bin/python benchmarks/ota_auth_cost.py [--n 2000] [--rounds 5]

Prints medians over the rounds and writes benchmarks/results/ota_auth_cost.json. The C node's check
is one Ed25519 verification over ~300 bytes, the same code as its manifest check.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import write_report  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from edgefleet.runtime import trust  # noqa: E402

FIELDS = dict(campaign="c2-20261206-192600", device="sim-0001", model=2, sha256="ab" * 32, trial_s=60,
              shadow=False, shadow_s=0)


def per_op_us(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="operations per round")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    k, k2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ticket = trust.sign_ticket(k, **FIELDS)
    keyset = trust.sign_keyset([(k.public_key(), 3), (k2.public_key(), 2)], 1, k)
    ts = trust.TrustSet.single(k.public_key())
    sign = [per_op_us(lambda: trust.sign_ticket(k, **FIELDS), a.n) for _ in range(a.rounds)]
    check = [per_op_us(lambda: trust.verify_ticket(ticket, ts), a.n) for _ in range(a.rounds)]
    report = {"ticket_bytes": len(ticket), "keyset_bytes_2_keys": len(keyset),
              "sign_ticket_us_median": statistics.median(sign), "verify_ticket_us_median": statistics.median(check),
              "rounds": a.rounds, "n": a.n, "sign_us": sign, "verify_us": check}
    print(f"ticket {len(ticket)} B, keyset (2 keys) {len(keyset)} B")
    print(f"sign a ticket   median {report['sign_ticket_us_median']:.0f} us over {a.rounds} rounds of {a.n}")
    print(f"verify a ticket median {report['verify_ticket_us_median']:.0f} us")
    write_report("ota_auth_cost", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
