"""MQTT over TLS against a real Mosquitto, with certificates made by `edgefleet pki` in the test:
serve and sim over mqtts://, clients with the wrong CA, an expired certificate or a wrong host name
refused with one line, and mutual TLS where the certificate is the device's identity."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fleet.support import result_payload
from testkit import free_port, stop_process

from edgefleet.service import pki
from edgefleet.service.broker import TlsListener, start_broker
from security.mosq import SECRET, Peer, deploy_config, mosquitto, write_accounts

REPO = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki") / "fleet"
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "pki", "init", "--dir", str(d), "--san", "localhost",
                           "--san", "127.0.0.1"], capture_output=True, text=True, cwd=REPO, env=ENV)
    assert proc.returncode == 0, proc.stderr
    for name in ("sim-0000", "sim-0001", "sim-0002", "sim-0003", "ef-ingest-1"):
        pki.issue(d, name)
    pki.issue(d, "wrongname", server=True, sans=["broker.elsewhere.example"])
    pki.issue(d, "expired", server=True, sans=["localhost", "127.0.0.1"], days=1,
              not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10))
    other = d.parent / "other"
    pki.init(other, server_names=["localhost"])
    pki.issue(other, "sim-0001")  # a certificate from a CA the broker does not trust
    return d


def client_tls(ca: Path, cert: Path | None = None, key: Path | None = None) -> dict:
    return {"ca_certs": str(ca), "certfile": str(cert) if cert else None, "keyfile": str(key) if key else None}


def test_keys_are_private_and_certificates_say_who(pki_dir) -> None:
    from cryptography import x509

    for key in pki_dir.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    cert = x509.load_pem_x509_certificate((pki_dir / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    dev = x509.load_pem_x509_certificate((pki_dir / "sim-0001.crt").read_bytes())
    assert dev.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "sim-0001"
    out = subprocess.run([sys.executable, "-m", "edgefleet", "pki", "list", "--dir", str(pki_dir)],
                         capture_output=True, text=True, cwd=REPO, env=ENV).stdout
    assert "sim-0001" in out and "PRIVATE" not in out and "BEGIN" not in out


@pytest.mark.parametrize("mutual", [False, True], ids=["server-auth", "mutual"])
def test_serve_and_sim_over_mqtts(pki_dir, tmp_path, mutual) -> None:
    """`edgefleet broker --tls [--require-cert]` as a library call; serve and sim reach it by
    mqtts://localhost (the name on the server certificate) and every result the sim had acknowledged
    is stored. Mutual: serve has its own certificate, each simulated node its own (--cert DIR)."""
    tls = TlsListener.from_pki(pki_dir, free_port(), require_certificate=mutual)
    serve_env = dict(ENV, EDGEFLEET_MQTT_CA=str(tls.ca))
    sim_certs: list[str] = []
    if mutual:
        serve_env.update(EDGEFLEET_MQTT_CERT=str(pki_dir / "ef-ingest-1.crt"),
                         EDGEFLEET_MQTT_KEY=str(pki_dir / "ef-ingest-1.key"))
        sim_certs = ["--cert", str(pki_dir)]
    with start_broker(prefer="mosquitto", tls=tls, workdir=tmp_path / "broker") as b:
        url = f"mqtts://localhost:{tls.port}"
        db = tmp_path / "fleet.db"
        serve = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--broker", url, "--db", str(db),
                                  "--role", "ingest", "--client-id", "ef-ingest-1"], cwd=REPO, env=serve_env,
                                 stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.log").open("wb"),
                                 start_new_session=True)
        try:
            report = tmp_path / "sim.json"
            sim = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", url, "--ca", str(tls.ca), *sim_certs,
                                  "--nodes", "4", "--faulty", "0", "--duration", "6", "--report", str(report)],
                                 cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
            assert sim.returncode == 0, sim.stderr[-2000:]
            published = json.loads(report.read_text())["published"]
            assert published >= 4 * 4 and json.loads(report.read_text())["refused_connects"] == 0
            deadline = time.time() + 15
            stored = 0
            while time.time() < deadline:
                out = subprocess.run([sys.executable, "-m", "edgefleet", "stats", "--db", str(db), "--json"],
                                     cwd=REPO, env=ENV, capture_output=True, text=True)
                stored = json.loads(out.stdout)["results"] if out.returncode == 0 else 0
                if stored >= published:
                    break
                time.sleep(0.5)
            assert stored == published, (tmp_path / "serve.log").read_text()[-2000:]
            assert serve.poll() is None
        finally:
            stop_process(serve)
        assert "TLS" not in (tmp_path / "serve.log").read_text()  # no handshake complaint
        assert b.running()


def outside_address() -> str | None:
    """An address of this host that is not loopback (what plant devices would reach), if any."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: the kernel only picks a route
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_required_certificates_leave_no_anonymous_plain_listener_outside(pki_dir, tmp_path) -> None:
    """`edgefleet broker --host 0.0.0.0 --tls DIR --require-cert`: plant devices reach the TLS port with
    their certificates; the plain anonymous listener (for services on this host) stays on loopback, so
    nobody on the network publishes as a device without one. It was bound to --host as well."""
    outside = outside_address()
    if outside is None:
        pytest.skip("this host has no non-loopback IPv4 address to test from")
    tls = TlsListener.from_pki(pki_dir, free_port(), require_certificate=True)
    with start_broker(prefer="mosquitto", host="0.0.0.0", tls=tls, workdir=tmp_path / "broker") as b:
        assert b.url == f"mqtt://127.0.0.1:{b.port}" and b.tls_url == f"mqtts://0.0.0.0:{tls.port}"
        local = Peer(b.port, None, None, "svc", host="127.0.0.1")
        assert local.ok
        local.close()
        with pytest.raises(OSError):  # refused: nothing listens there in plain text
            Peer(b.port, None, None, "intruder", host=outside)
        ca = pki_dir / "ca.crt"
        dev = Peer(tls.port, None, None, "sim-0000", tls=client_tls(ca, pki_dir / "sim-0000.crt",
                                                                    pki_dir / "sim-0000.key"), host="localhost")
        assert dev.ok
        dev.close()
        try:
            anon = Peer(tls.port, None, None, "anon", tls=client_tls(ca), host="localhost")
        except (ssl.SSLError, OSError):
            anon = None  # refused in the handshake
        assert anon is None or not anon.ok
        if anon is not None:
            anon.close()


@pytest.mark.parametrize("case, expect", [
    ("wrong-ca", "not signed by a CA"),
    ("expired", "has expired"),
    ("hostname", "hostname mismatch"),
    ("no-client-cert", "wants a client certificate"),
])
def test_bad_certificates_are_refused_with_one_line(pki_dir, tmp_path, case, expect) -> None:
    server = {"expired": "expired", "hostname": "wrongname"}.get(case, "server")
    tls = TlsListener(free_port(), pki_dir / "ca.crt", pki_dir / f"{server}.crt", pki_dir / f"{server}.key",
                      require_certificate=case == "no-client-cert")
    ca = pki_dir.parent / "other" / "ca.crt" if case == "wrong-ca" else pki_dir / "ca.crt"
    with start_broker(prefer="mosquitto", tls=tls, workdir=tmp_path / "broker"):
        for argv in (["serve", "--db", str(tmp_path / "x.db"), "--role", "ingest"],
                     ["sim", "--nodes", "1", "--faulty", "0", "--duration", "2", "--wait-broker", "2"]):
            proc = subprocess.run([sys.executable, "-m", "edgefleet", argv[0], "--broker",
                                   f"mqtts://localhost:{tls.port}", "--ca", str(ca), *argv[1:]],
                                  cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
            err = proc.stderr.strip().splitlines()
            assert proc.returncode == 2, proc.stderr[-1500:]
            assert expect in err[-1] and "Traceback" not in proc.stderr, proc.stderr[-1500:]
        if case != "no-client-cert":
            with pytest.raises(ssl.SSLCertVerificationError):
                Peer(tls.port, None, None, "probe", tls=client_tls(ca), host="localhost")


def test_missing_ca_file_and_plaintext_port(pki_dir, tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "serve", "--broker", "mqtts://localhost:1",
                           "--ca", str(tmp_path / "nope.crt"), "--db", str(tmp_path / "x.db")],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    with start_broker(prefer="mosquitto", workdir=tmp_path / "broker") as b:  # plain listener, mqtts:// URL
        proc = subprocess.run([sys.executable, "-m", "edgefleet", "serve", "--broker", f"mqtts://localhost:{b.port}",
                               "--ca", str(pki_dir / "ca.crt"), "--db", str(tmp_path / "x.db"), "--role", "ingest"],
                              cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "plain mqtt:// listener" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture()
def mtls_broker(pki_dir, tmp_path):
    """deploy/ config (dynamic-security plugin) plus deploy/mosquitto/tls.conf with the test PKI."""
    accounts = tmp_path / "dynamic-security.json"
    write_accounts(accounts)
    port, tls_port = free_port(), free_port()
    snippet = (REPO / "deploy/mosquitto/tls.conf").read_text().replace("/mosquitto/pki/", f"{pki_dir}/")
    snippet = snippet.replace("listener 8883 0.0.0.0", f"listener {tls_port} 127.0.0.1")
    with mosquitto(deploy_config(tmp_path, port, accounts, extra=snippet), tls_port):
        yield port, tls_port


def test_mutual_tls_certificate_is_the_identity(pki_dir, mtls_broker) -> None:
    from edgefleet.service.credentials import device_password

    port, tls_port = mtls_broker
    ca = pki_dir / "ca.crt"
    ingest = Peer(tls_port, None, None, "x", tls=client_tls(ca, pki_dir / "ef-ingest-1.crt", pki_dir / "ef-ingest-1.key"),
                  host="localhost")
    assert ingest.ok and ingest.subscribe("ef/v1/+/result") == ["Granted QoS 1"]
    dev = Peer(tls_port, "sim-0000", device_password(SECRET, "sim-0000"), "sim-0000",  # claims to be sim-0000 ...
               tls=client_tls(ca, pki_dir / "sim-0001.crt", pki_dir / "sim-0001.key"), host="localhost")
    assert dev.ok  # ... but its certificate says sim-0001, and that is who it is
    dev.c.publish("ef/v1/sim-0001/result", result_payload(0, 1), qos=1).wait_for_publish(5)
    dev.c.publish("ef/v1/sim-0000/result", result_payload(0, 1), qos=1).wait_for_publish(5)
    assert dev.subscribe("ef/v1/sim-0000/cmd") == ["Not authorized"]
    assert dev.subscribe("ef/v1/sim-0001/cmd") == ["Granted QoS 1"]
    # a valid certificate whose id has no account (never added, or revoked with `edgefleet device
    # revoke`): the handshake succeeds, but it may neither publish nor subscribe
    orphan = Peer(tls_port, None, None, "sim-0003", tls=client_tls(ca, pki_dir / "sim-0003.crt",
                                                                   pki_dir / "sim-0003.key"), host="localhost")
    assert orphan.ok and orphan.subscribe("ef/v1/sim-0003/cmd") == ["Not authorized"]
    orphan.c.publish("ef/v1/sim-0003/result", result_payload(0, 1), qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert ingest.messages == ["ef/v1/sim-0001/result"]
    for p in (dev, ingest, orphan):
        p.close()


def test_mutual_tls_refuses_no_certificate_and_a_foreign_ca(pki_dir, mtls_broker) -> None:
    _, tls_port = mtls_broker
    ca = pki_dir / "ca.crt"
    for tls in (client_tls(ca), client_tls(ca, pki_dir.parent / "other" / "sim-0001.crt",
                                           pki_dir.parent / "other" / "sim-0001.key")):
        try:
            p = Peer(tls_port, "sim-0001", device_password_of("sim-0001"), "sim-0001", tls=tls, host="localhost")
        except (ssl.SSLError, OSError):
            continue  # refused in the handshake
        assert not p.ok  # or right after it (TLS 1.3 reports the client certificate alert late)
        p.close()


def device_password_of(dev: str) -> str:
    from edgefleet.service.credentials import device_password

    return device_password(SECRET, dev)


def test_revoked_certificate_is_refused_after_a_reload(pki_dir, tmp_path) -> None:
    """`edgefleet pki revoke` writes the CRL; SIGHUP makes Mosquitto read it again: the revoked
    certificate is refused, another one still works."""
    import signal

    d = tmp_path / "pki"
    shutil.copytree(pki_dir, d)
    os.chmod(d / "ca.key", 0o600)
    tls = TlsListener.from_pki(d, free_port(), require_certificate=True)
    with start_broker(prefer="mosquitto", tls=tls, workdir=tmp_path / "broker") as b:
        dev = lambda: Peer(tls.port, None, None, "sim-0000", tls=client_tls(d / "ca.crt", d / "sim-0000.crt",  # noqa: E731
                                                                           d / "sim-0000.key"), host="localhost")
        first = dev()
        assert first.ok
        first.close()
        proc = subprocess.run([sys.executable, "-m", "edgefleet", "pki", "revoke", "sim-0000", "--dir", str(d)],
                              cwd=REPO, env=ENV, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        os.kill(b.pid, signal.SIGHUP)
        time.sleep(1.0)
        try:
            again = dev()
            assert not again.ok
            again.close()
        except (ssl.SSLError, OSError):
            pass  # refused in the handshake
        other = Peer(tls.port, None, None, "sim-0001", tls=client_tls(d / "ca.crt", d / "sim-0001.crt",
                                                                      d / "sim-0001.key"), host="localhost")
        assert other.ok
        other.close()


def test_pki_and_broker_bad_input_is_one_line(pki_dir, tmp_path) -> None:
    fresh = tmp_path / "fresh"
    for argv, why in ((("pki", "init", "--dir", str(pki_dir)), "already holds a CA"),
                      (("pki", "issue", "sim-0009", "--dir", str(fresh)), "no CA"),
                      (("pki", "issue", "--dir", str(pki_dir)), "whose certificate"),
                      (("pki", "issue", "ca", "--dir", str(pki_dir)), "not one of"),
                      (("pki", "issue", "x/y", "--dir", str(pki_dir)), "1-64 of"),
                      (("pki", "issue", "--server", "--dir", str(pki_dir)), "at least one name"),
                      (("pki", "issue", "sim-0009", "--days", "0", "--dir", str(pki_dir)), "at least 1"),
                      (("pki", "revoke", "nobody", "--dir", str(pki_dir)), "no client certificate"),
                      (("pki", "list", "--dir", str(fresh)), "no CA"),
                      (("broker", "--tls", str(fresh)), "pki init"),
                      (("broker", "--require-cert"), "needs --tls")):
        proc = subprocess.run([sys.executable, "-m", "edgefleet", *argv], cwd=REPO, env=ENV, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and why in proc.stderr and "Traceback" not in proc.stderr, (argv, proc.stderr)
    weak = tmp_path / "weak"
    shutil.copytree(pki_dir, weak)
    os.chmod(weak / "ca.key", 0o644)
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "pki", "issue", "sim-0009", "--dir", str(weak)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "readable by others" in proc.stderr


def test_production_config_over_mutual_tls_end_to_end(pki_dir, mtls_broker, tmp_path) -> None:
    """deploy/ config + tls.conf (permissions from the plugin, identity from the certificate): serve
    as ef-ingest-1 and three simulated nodes, each with its own certificate; every acknowledged
    result is stored."""
    _, tls_port = mtls_broker
    url = f"mqtts://localhost:{tls_port}"
    db = tmp_path / "fleet.db"
    env = dict(ENV, EDGEFLEET_MQTT_CA=str(pki_dir / "ca.crt"), EDGEFLEET_MQTT_CERT=str(pki_dir / "ef-ingest-1.crt"),
               EDGEFLEET_MQTT_KEY=str(pki_dir / "ef-ingest-1.key"))
    serve = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--broker", url, "--db", str(db), "--role",
                              "ingest", "--group", "ingest", "--client-id", "ef-ingest-1", "--mqtt-version", "5"],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=(tmp_path / "serve.log").open("wb"), start_new_session=True)
    try:
        report = tmp_path / "sim.json"
        sim = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", url, "--ca", str(pki_dir / "ca.crt"),
                              "--cert", str(pki_dir), "--nodes", "3", "--faulty", "0", "--duration", "5",
                              "--mqtt-version", "5", "--report", str(report)],
                             cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
        assert sim.returncode == 0, sim.stderr[-2000:]
        got = json.loads(report.read_text())
        assert got["refused_connects"] == 0 and got["refused"] == 0 and got["published"] >= 3 * 3
        stored, deadline = 0, time.time() + 15
        while time.time() < deadline:
            out = subprocess.run([sys.executable, "-m", "edgefleet", "stats", "--db", str(db), "--json"],
                                 cwd=REPO, env=ENV, capture_output=True, text=True)
            stored = json.loads(out.stdout)["results"] if out.returncode == 0 else 0
            if stored >= got["published"]:
                break
            time.sleep(0.5)
        assert stored == got["published"], (tmp_path / "serve.log").read_text()[-2000:]
    finally:
        stop_process(serve)
    assert "refused ingest's subscription" not in (tmp_path / "serve.log").read_text()
