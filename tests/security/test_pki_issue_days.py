"""`edgefleet pki issue --days`: a certificate never outlives its CA (it would stop verifying, silently,
when the CA expires); an explicit --days past the CA is refused in one line with both dates, the
default validity is shortened to the CA's remaining life with a note, non-positive days are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from edgefleet.errors import ConfigError
from edgefleet.service import pki

REPO = Path(__file__).resolve().parents[2]


def issue(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env["EDGEFLEET_DB"] = str(tmp_path / "no-fleet.db")  # no audit log: nothing written outside tmp_path
    return subprocess.run([sys.executable, "-m", "edgefleet", "pki", "issue", *args, "--dir", str(tmp_path / "pki")],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env=env)


def expiry(path: Path):
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


def test_days_past_the_ca_are_refused_with_both_dates(tmp_path):
    pki.init(tmp_path / "pki", server_names=["localhost"])
    ca_end = expiry(tmp_path / "pki" / "ca.crt")
    for days in ("100000", "100000000000"):
        run = issue(tmp_path, "dev-1", "--days", days)
        err = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(err) == 1 and "Traceback" not in run.stderr, run.stderr
        assert err[0].startswith(f"edgefleet: error: --days {days}: the certificate would expire ")
        assert "after its CA" in err[0] and f"expires {ca_end:%Y-%m-%d}" in err[0] and "at most 3650 days" in err[0]
    assert not (tmp_path / "pki" / "dev-1.crt").exists()
    ok = issue(tmp_path, "dev-1", "--days", "3650")
    assert ok.returncode == 0, ok.stderr
    assert expiry(tmp_path / "pki" / "dev-1.crt") <= ca_end


@pytest.mark.parametrize("days", ["0", "-5"])
def test_non_positive_days_are_refused(tmp_path, days):
    pki.init(tmp_path / "pki", server_names=["localhost"])
    run = issue(tmp_path, "dev-1", "--days", days)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "at least 1 day" in run.stderr


def test_the_default_validity_stops_at_the_ca_with_a_note(tmp_path):
    pki.init(tmp_path / "pki", server_names=["localhost"], days=100)  # a CA near its end (and its server cert)
    ca_end = expiry(tmp_path / "pki" / "ca.crt")
    assert expiry(tmp_path / "pki" / "server.crt") <= ca_end
    run = issue(tmp_path, "dev-1")
    assert run.returncode == 0, run.stderr
    assert "note: the CA expires in 100 days: the certificate is valid 100 days, not 825" in run.stderr
    assert expiry(tmp_path / "pki" / "dev-1.crt") <= ca_end


def test_the_library_refuses_too(tmp_path):
    pki.init(tmp_path / "pki", server_names=["localhost"])
    with pytest.raises(ConfigError, match="after its CA"):
        pki.issue(tmp_path / "pki", "dev-2", days=4000)
    with pytest.raises(ConfigError, match="at least 1 day"):
        pki.issue(tmp_path / "pki", "dev-2", days=0)
