"""The dashboard behind the project's own Caddyfile (deploy/caddy/Caddyfile), as compose runs it: a real
`caddy` (Debian's 2.6.2) with `tls internal`, in front of a real Streamlit dashboard, on loopback and free
ports (set through the Caddyfile's environment variables, the file itself unchanged). Checked over https
against the proxy's own CA: the page renders in headless Chromium through the proxy (its content arrives
over Streamlit's websocket), plain http redirects to https, and the security headers are set."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from testkit import free_port, stop_process, wait_port

from dashboards.sample_fleet import populate
from dashboards.snapshot import CHROMIUM_FLAGS, Browser, chromium_binary, dashboard
from edgefleet.service.store import open_store

REPO = Path(__file__).resolve().parents[2]
CADDYFILE = REPO / "deploy" / "caddy" / "Caddyfile"
HOST = "127.0.0.1"


@dataclass
class Proxy:
    http_port: int
    https_port: int
    root: Path  # the proxy's internal root CA certificate
    intermediate: Path

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.https_port}"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root))


def caddy_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Caddy's state (its CA, certificates) in `tmp`, never in this user's home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    return {**env, "HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config"),
            **extra}


def adapt(tmp: Path, **env: str) -> dict:
    """The Caddyfile as Caddy's JSON config, with `env` set (`caddy adapt`: no listener, no certificate)."""
    proc = subprocess.run(["caddy", "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                          capture_output=True, text=True, timeout=30, env=caddy_env(tmp, **env))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[Proxy]:
    if shutil.which("caddy") is None:
        pytest.fail("caddy is not installed (apt-get install caddy; it is in scripts/apt-packages.txt)", pytrace=False)
    tmp = tmp_path_factory.mktemp("proxy")
    db = tmp / "fleet.db"
    store = open_store(db, synchronous="OFF")
    populate(store, minutes=5)
    store.close()
    with dashboard(db) as upstream:
        p = Proxy(free_port(), free_port(), tmp / "data/caddy/pki/authorities/local/root.crt",
                  tmp / "data/caddy/pki/authorities/local/intermediate.crt")
        env = caddy_env(tmp, EDGEFLEET_HOST=f"{HOST}:{p.https_port}", EDGEFLEET_HTTP_PORT=str(p.http_port),
                        EDGEFLEET_PROXY_BIND=HOST,
                        EDGEFLEET_DASHBOARD_UPSTREAM=upstream.split("://", 1)[1])
        log = (tmp / "caddy.log").open("wb")
        proc = subprocess.Popen(["caddy", "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_port(p.https_port, timeout=15)
            deadline = time.monotonic() + 15  # the internal CA and the certificate are made at start
            while True:
                try:
                    with urllib.request.urlopen(p.url + "/_stcore/health", context=p.tls(), timeout=2) as r:
                        assert r.status == 200
                    break
                except OSError as exc:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"caddy did not serve {p.url} ({exc}): "
                                    f"{(tmp / 'caddy.log').read_text()[-2000:]}", pytrace=False)
                    time.sleep(0.2)
            yield p
        finally:
            stop_process(proc)
            log.close()


def spki_hash(pem: bytes) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's --ignore-certificate-errors-spki-list takes."""
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@contextmanager
def chromium_trusting(proxy: Proxy, timeout: float = 30.0) -> Iterator[Browser]:
    """Headless Chromium that trusts the proxy's internal CA (its keys pinned) and nothing else extra."""
    from websockets.sync.client import connect

    leaf = ssl.get_server_certificate((HOST, proxy.https_port)).encode()
    pins = ",".join(spki_hash(pem) for pem in (proxy.root.read_bytes(), proxy.intermediate.read_bytes(), leaf))
    profile = Path(tempfile.mkdtemp(prefix="ef-chromium-"))
    proc = subprocess.Popen([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             f"--ignore-certificate-errors-spki-list={pins}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not open its DevTools port (exit {proc.poll()})", pytrace=False)
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            page = next(t for t in json.load(r) if t.get("type") == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout) as ws:
            yield Browser(ws)
    finally:
        stop_process(proc)
        shutil.rmtree(profile, ignore_errors=True)


def test_the_dashboard_renders_in_chromium_through_the_proxy(proxy) -> None:
    """The HTML shell alone says nothing: "Fleet overview" and the metrics come over the websocket."""
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed (scripts/apt-packages.txt)", pytrace=False)
    with chromium_trusting(proxy) as browser:
        t0 = time.monotonic()
        browser.open(proxy.url + "/")
        browser.wait_for("document.body.innerText.includes('Fleet overview')", 30, "the fleet page's content")
        browser.wait_for("document.querySelectorAll('[data-testid=\"stMetric\"]').length > 0", 15, "the metrics")
        assert browser.eval("location.href").startswith(proxy.url)
        assert "Connection error" not in browser.text()
        print(f"fleet page drawn through the proxy after {time.monotonic() - t0:.1f} s")


def test_https_only_with_the_proxy_ca_and_security_headers(proxy) -> None:
    with urllib.request.urlopen(proxy.url + "/", context=proxy.tls(), timeout=10) as r:
        assert r.status == 200
        h = r.headers
    assert int(h["Strict-Transport-Security"].split("max-age=")[1].split(";")[0]) >= 31536000
    assert h["X-Content-Type-Options"] == "nosniff" and h["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in h["Content-Security-Policy"] and h["Referrer-Policy"] == "same-origin"
    assert "camera=()" in h["Permissions-Policy"]
    assert "Server" not in h, h["Server"]  # neither Caddy nor Tornado named
    # the certificate is the proxy's own CA's: a client without that CA refuses it
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(proxy.url + "/", context=ssl.create_default_context(), timeout=10)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_redirects_to_https(proxy) -> None:
    conn = http.client.HTTPConnection(HOST, proxy.http_port, timeout=10)
    conn.request("GET", "/?page=alarms", headers={"Host": HOST})
    r = conn.getresponse()
    assert r.status in (301, 308) and r.getheader("Location") == f"{proxy.url}/?page=alarms"
    assert b"Fleet" not in r.read()  # nothing of the dashboard in clear
    conn.close()


def test_compose_defaults_and_a_public_certificate(tmp_path) -> None:
    """Without variables (compose): 80 and 443, the dashboard service upstream, Caddy's internal CA. With
    EDGEFLEET_TLS set to an e-mail address: ACME (a public certificate) for EDGEFLEET_HOST instead."""
    cfg = adapt(tmp_path)
    http_app = cfg["apps"]["http"]
    assert http_app["http_port"] == 80
    assert [srv["listen"] for srv in http_app["servers"].values()] == [["0.0.0.0:443"]]
    assert cfg["admin"]["disabled"] is True
    text = json.dumps(cfg)
    assert '"dial": "dashboard:8501"' in text and '"localhost"' in text
    issuers = [i["module"] for p in cfg["apps"]["tls"]["automation"]["policies"] for i in p.get("issuers", [])]
    assert issuers == ["internal"]
    public = adapt(tmp_path, EDGEFLEET_HOST="dashboard.plant.example", EDGEFLEET_TLS="ops@plant.example")
    policies = public["apps"]["tls"]["automation"]["policies"]
    assert any("dashboard.plant.example" in p.get("subjects", []) for p in policies)
    assert "internal" not in json.dumps(policies) and "ops@plant.example" in json.dumps(policies)
