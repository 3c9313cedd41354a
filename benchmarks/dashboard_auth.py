"""What sign-in and the audit log cost: one scrypt password check (the sign-in's work, and what one guess
costs an attacker holding the `users` table), and one write through `audit.perform` on SQLite (the role
check, the write itself and the audit row) against the bare write.

    python benchmarks/dashboard_auth.py [--rounds 15] [--writes 300]

Prints medians and writes benchmarks/results/dashboard_auth.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import write_report  # noqa: E402

from edgefleet.service import audit  # noqa: E402
from edgefleet.service.accounts import (  # noqa: E402
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    hash_password,
    verify_password,
)
from edgefleet.service.store import SQLiteStore  # noqa: E402


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15, help="password checks to time")
    p.add_argument("--writes", type=int, default=300, help="writes to time, each way")
    args = p.parse_args()

    stored = hash_password("tulip-orbit-lantern-42")
    verify = timed(lambda: verify_password("tulip-orbit-lantern-42", stored), args.rounds)

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "f.db")  # synchronous=FULL, as serve and the dashboard open it
        actor = audit.Actor("ann", "operator", audit.VIA_DASHBOARD)
        # the write stands in as one one-row transaction (an acknowledgement is one UPDATE in one transaction)
        bare = timed(lambda: store.append_audit(0, "x", "x", "x", "x", {}, "ok"), args.writes)
        gated = timed(lambda: audit.perform(store, actor, "alarm.ack", "alarm 1", {"note": ""},
                                            lambda: store.append_audit(0, "x", "x", "x", "x", {}, "ok")), args.writes)
        rows = len(store.audit(limit=10**9))
        store.close()

    med = {"verify_ms": statistics.median(verify) * 1000, "bare_write_ms": statistics.median(bare) * 1000,
           "audited_write_ms": statistics.median(gated) * 1000}
    print(f"scrypt N={SCRYPT_N} r={SCRYPT_R} p={SCRYPT_P} ({128 * SCRYPT_R * SCRYPT_N // 2**20} MiB): "
          f"password check median {med['verify_ms']:.0f} ms over {args.rounds}")
    print(f"SQLite (FULL) one-row write median {med['bare_write_ms']:.2f} ms; through audit.perform (role check + "
          f"the write + its audit row) {med['audited_write_ms']:.2f} ms, over {args.writes} each ({rows} rows)")
    write_report("dashboard_auth", {"scrypt": {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}, "rounds": args.rounds,
                                    "writes": args.writes, "median": med,
                                    "verify_s": verify, "bare_write_s": bare, "audited_write_s": gated})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
