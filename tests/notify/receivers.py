"""Real receivers for notification tests: an HTTP server that checks the HMAC signature (the
webhook receiver a plant would run) and an SMTP server (aiosmtpd), both on free loopback ports."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from testkit import free_port

from edgefleet.service.notify import SIGNATURE_HEADER, verify


class WebhookReceiver:
    """POSTs to any path; each kept as (headers, body dict, signature valid). `status` is what it
    answers; `stop()` closes the port (the receiver is down), `start()` opens it again."""

    def __init__(self, secret: str, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.status = 200
        self.received: list[tuple[dict, dict, bool]] = []
        self.arrivals: list[float] = []  # ms since the epoch, one per received notification
        self.attempts = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/edgefleet"

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # no secret: a chat tool's incoming webhook, which takes unsigned posts
                ok = verify(outer.secret, raw, self.headers.get(SIGNATURE_HEADER, "")) if outer.secret else True
                with outer._lock:
                    outer.attempts += 1
                    status = outer.status if ok else 401
                    if status == 200:
                        outer.received.append((dict(self.headers), json.loads(raw), ok))
                        outer.arrivals.append(time.time() * 1000)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self, event: str | None = None) -> list[dict]:
        with self._lock:
            return [b for _, b, _ in self.received if event is None or b.get("event") == event]

    def wait(self, n: int, timeout: float = 20.0, event: str | None = None) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.bodies(event)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"webhook got {len(self.bodies(event))} {event or ''} notification(s), "
                                     f"waited for {n}: {self.bodies()}")
            time.sleep(0.05)
        return self.bodies(event)


class MailSink:
    """aiosmtpd on a free port, collecting messages; with `cert` it offers (and requires) STARTTLS."""

    def __init__(self, cert: tuple[Path, Path] | None = None) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[str, list[str], bytes]] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
                return "250 OK"

        kw = {}
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            kw = {"tls_context": ctx, "require_starttls": True}
        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kw)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def wait(self, n: int, timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"mail sink got {len(self.messages)} message(s), waited for {n}")
            time.sleep(0.05)
        return self.messages


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost (openssl), and its key."""
    cert, key = tmp / "smtp.crt", tmp / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key
