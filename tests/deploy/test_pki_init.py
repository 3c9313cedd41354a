"""Compose's pki-init service, its own command (from `docker compose config`) run here with the three
volumes as temp folders: it makes the fleet CA once, gives the broker and the services only what each
needs, keeps the CA on a second run, and what it writes is accepted by a real Mosquitto running
deploy/mosquitto/mosquitto.conf + tls.conf (as compose concatenates them): a service connects by
certificate, a client without one is refused."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from security.mosq import Peer, deploy_config, mosquitto, write_accounts
from testkit import free_port

from deploy.test_compose import REPO, compose_bin

SERVICES = ("ef-ingest-1", "ef-ingest-2", "ef-ota")


@pytest.fixture(scope="module")
def pki_init_command(tmp_path_factory) -> str:
    env = tmp_path_factory.mktemp("env") / ".env"
    env.write_text((REPO / "deploy" / ".env.example").read_text())
    proc = subprocess.run([compose_bin(), "-f", str(REPO / "docker-compose.yml"), "--env-file", str(env),
                           "config", "--format", "json"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    svc = json.loads(proc.stdout)["services"]["pki-init"]
    assert svc["entrypoint"][0] == "sh" and svc["user"] == "root" and svc["restart"] == "no"
    assert {v["target"] for v in svc["volumes"]} == {"/pki", "/broker-pki", "/service-pki"}
    return svc["command"][0].replace("$$", "$")  # `config` keeps compose's escaping


def run_pki_init(command: str, root: Path, host: str = "broker.plant.example") -> subprocess.CompletedProcess:
    """The command as the container runs it, with the volumes under `root` and this venv's python."""
    script = (command.replace("D=/pki;", f"D={root}/pki;").replace("/broker-pki/", f"{root}/broker-pki/")
              .replace("/service-pki/", f"{root}/service-pki/"))
    if os.geteuid() != 0:  # only root may chown; the modes are still checked
        script = script.replace("-o 1883 -g 1883 ", "").replace("-o 1000 -g 1000 ", "")
    for d in ("broker-pki", "service-pki"):
        (root / d).mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env.update(EDGEFLEET_HOST=host, PATH=f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}")
    return subprocess.run(["sh", "-ec", script], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def volumes(pki_init_command, tmp_path_factory) -> Path:
    """The first `docker compose up`: pki-init on empty volumes (under the returned folder)."""
    root = tmp_path_factory.mktemp("volumes")
    first = run_pki_init(pki_init_command, root)
    assert first.returncode == 0, first.stderr[-2000:]
    return root


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_pki_init_makes_the_ca_once_and_splits_what_each_side_gets(pki_init_command, volumes) -> None:
    tmp_path = volumes
    broker, service = tmp_path / "broker-pki", tmp_path / "service-pki"
    assert {p.name for p in broker.iterdir()} == {"ca.crt", "server.crt", "server.key", "crl.pem"}
    assert {p.name for p in service.iterdir()} == {"ca.crt", *(f"{s}.{e}" for s in SERVICES for e in ("crt", "key"))}
    assert mode(broker / "server.key") == 0o600 and all(mode(service / f"{s}.key") == 0o600 for s in SERVICES)
    if os.geteuid() == 0:
        assert (broker / "server.key").stat().st_uid == 1883 and (service / "ef-ota.key").stat().st_uid == 1000
    san = x509.load_pem_x509_certificate((broker / "server.crt").read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert {"mosquitto", "localhost", "broker.plant.example"} <= set(san.get_values_for_type(x509.DNSName))
    ca = (tmp_path / "pki" / "ca.crt").read_bytes()
    ota = (tmp_path / "pki" / "ef-ota.crt").read_bytes()

    # a second `up`: the same CA and certificates; a revocation reaches the broker's copy of the CRL
    subprocess.run([str(REPO / ".venv/bin/python"), "-m", "edgefleet", "pki", "revoke", "ef-ingest-2", "--dir",
                    str(tmp_path / "pki")], check=True, capture_output=True, cwd=REPO,
                   env={k: v for k, v in os.environ.items() if k != "EDGEFLEET_DB"})
    second = run_pki_init(pki_init_command, tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (tmp_path / "pki" / "ca.crt").read_bytes() == ca == (broker / "ca.crt").read_bytes()
    assert (tmp_path / "pki" / "ef-ota.crt").read_bytes() == ota == (service / "ef-ota.crt").read_bytes()
    crl = x509.load_pem_x509_crl((broker / "crl.pem").read_bytes())
    revoked = x509.load_pem_x509_certificate((service / "ef-ingest-2.crt").read_bytes()).serial_number
    assert crl.get_revoked_certificate_by_serial_number(revoked) is not None


def test_the_broker_takes_what_pki_init_wrote(volumes, tmp_path) -> None:
    """mosquitto.conf + tls.conf with broker-pki: ingest connects by its certificate alone (no username, no
    password) and may subscribe to every result; a client without a certificate is refused."""
    broker, service = volumes / "broker-pki", volumes / "service-pki"
    accounts = tmp_path / "dynamic-security.json"
    write_accounts(accounts)
    port, tls_port = free_port(), free_port()
    tls_conf = (REPO / "deploy/mosquitto/tls.conf").read_text()
    assert "listener 8883 0.0.0.0" in tls_conf and "require_certificate true" in tls_conf
    snippet = tls_conf.replace("/mosquitto/pki/", f"{broker}/").replace("listener 8883 0.0.0.0",
                                                                         f"listener {tls_port} 127.0.0.1")
    with mosquitto(deploy_config(tmp_path, port, accounts, extra=snippet), tls_port):
        tls = {"ca_certs": str(service / "ca.crt"), "certfile": str(service / "ef-ingest-1.crt"),
               "keyfile": str(service / "ef-ingest-1.key")}
        ingest = Peer(tls_port, None, None, "x", tls=tls, host="localhost")
        assert ingest.ok and ingest.subscribe("ef/v1/+/result") == ["Granted QoS 1"]
        ingest.close()
        try:
            anon = Peer(tls_port, None, None, "anon", tls={"ca_certs": str(service / "ca.crt")}, host="localhost")
        except (ssl.SSLError, OSError):
            return  # refused in the handshake
        assert not anon.ok  # or right after it (TLS 1.3 reports the missing certificate late)
        anon.close()
