"""`edgefleet doctor` on who may reach the broker (issue 20): broker.tls and broker.anonymous
against a real Mosquitto run from the project's production config (deploy/mosquitto/mosquitto.conf
with the dynamic-security plugin, plus deploy/mosquitto/tls.conf for mutual TLS), with
certificates made by `edgefleet pki` in the test; and the verdicts for what a test cannot host
(a plain listener off loopback, a certificate about to expire)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import free_port

from edgefleet.cli import main
from edgefleet.service import pki
from edgefleet.service.doctor.security import (
    AnonProbe,
    TlsProbe,
    check_anonymous,
    check_tls,
)
from security.mosq import deploy_config, mosquitto, write_accounts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet_pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki") / "fleet"
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "pki", "init", "--dir", str(d), "--san", "localhost",
                           "--san", "127.0.0.1"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    pki.issue(d, "ef-ingest-1")
    pki.init(d.parent / "other", server_names=["localhost"])  # a CA the broker's certificate does not chain to
    return d


@pytest.fixture(scope="module")
def production_broker(fleet_pki, tmp_path_factory):
    """The deploy/ config: a plain listener with the dynamic-security plugin, and the mutual-TLS one."""
    work = tmp_path_factory.mktemp("broker")
    accounts = work / "dynamic-security.json"
    write_accounts(accounts)
    port, tls_port = free_port(), free_port()
    snippet = (REPO / "deploy/mosquitto/tls.conf").read_text().replace("/mosquitto/pki/", f"{fleet_pki}/")
    snippet = snippet.replace("listener 8883 0.0.0.0", f"listener {tls_port} 127.0.0.1")
    with mosquitto(deploy_config(work, port, accounts, extra=snippet), tls_port):
        yield port, tls_port


def doctor(capsys, *args: str) -> tuple[int, dict[str, dict]]:
    code = main(["doctor", "--json", "--skip", "store", "--timeout", "3", *args])
    out = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in out["checks"]}


def test_the_production_config_over_mutual_tls_passes_both(fleet_pki, production_broker, capsys):
    _, tls_port = production_broker
    code, checks = doctor(capsys, "--broker", f"mqtts://localhost:{tls_port}", "--ca", str(fleet_pki / "ca.crt"),
                          "--cert", str(fleet_pki / "ef-ingest-1.crt"), "--key", str(fleet_pki / "ef-ingest-1.key"))
    assert code == 0, checks
    assert checks["broker.tls"]["status"] == "pass" and "valid for localhost" in checks["broker.tls"]["detail"]
    assert checks["broker.anonymous"]["status"] == "pass"
    assert "TLS handshake" in checks["broker.anonymous"]["detail"]  # no certificate: refused before MQTT
    assert checks["broker.mqtt5"]["status"] == "pass"  # the MQTT probes ran over TLS too


def test_the_production_plain_listener_refuses_anonymous_clients(production_broker, capsys):
    port, _ = production_broker
    code, checks = doctor(capsys, "--broker", f"mqtt://127.0.0.1:{port}")
    assert checks["broker.anonymous"]["status"] == "pass" and "CONNACK" in checks["broker.anonymous"]["detail"]
    assert checks["broker.tls"]["status"] == "pass" and "loopback" in checks["broker.tls"]["detail"]
    assert code == 0  # the doctor without an account: its probes are not authorized, which is no failure


def test_a_certificate_from_another_ca_fails_in_one_line(fleet_pki, production_broker, capsys):
    _, tls_port = production_broker
    code, checks = doctor(capsys, "--broker", f"mqtts://localhost:{tls_port}",
                          "--ca", str(fleet_pki.parent / "other" / "ca.crt"))
    assert code == 1 and checks["broker.tls"]["status"] == "fail"
    assert "not signed by a CA" in checks["broker.tls"]["detail"] and "\n" not in checks["broker.tls"]["detail"]
    assert all(c["status"] == "skip" for n, c in checks.items() if n != "broker.tls")


def test_a_missing_ca_file_is_a_usage_error(tmp_path, capsys):
    code = main(["doctor", "--broker", "mqtts://localhost:1", "--ca", str(tmp_path / "nope.crt"), "--skip", "store"])
    assert code == 2 and "no such file" in capsys.readouterr().err


def test_the_development_broker_is_a_warning_on_loopback_and_a_failure_elsewhere():
    """`edgefleet broker` allows anonymous clients on loopback (development); the same answer
    from a broker other hosts reach is a failure: anyone there can pre-empt a device's results."""
    let_in = AnonProbe(True, "connected; SUBSCRIBE ef/v1/+/result: Granted QoS 1", True)
    assert check_anonymous(let_in, "127.0.0.1", "127.0.0.1:1883").status == "warn"
    off_host = check_anonymous(let_in, "broker.plant", "broker.plant:1883")
    assert off_host.status == "fail" and "allow_anonymous false" in off_host.fix and "duplicate" in off_host.detail
    assert check_anonymous(AnonProbe(None, "cannot connect"), "h", "h:1").status == "skip"
    assert check_tls(None, "broker.plant", "broker.plant:1883").status == "warn"  # plain, across the network
    soon = check_tls(TlsProbe(True, version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", days_left=12.0), "b", "b:8883")
    assert soon.status == "warn" and "12 days" in soon.detail and "pki issue" in soon.fix
