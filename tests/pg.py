"""A throwaway PostgreSQL server for tests and benchmarks: initdb into a temporary directory, start
`postgres` on a free loopback port, one fresh database per caller, stop and remove it all at the end.

Debian's `postgresql` package (scripts/apt-packages.txt) puts the server in
/usr/lib/postgresql/<major>/bin. The server refuses to run as root: as root the cluster belongs to
the `postgres` user (the package creates it; else `nobody`) and every server command runs through
`runuser`. Logins over TCP need a password (scram-sha-256), so a wrong password is a real refusal.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgefleet.protocol.connect import free_port

USER = "edgefleet"
PASSWORD = "pg-test-secret"


def pg_bin() -> Path | None:
    """The newest installed server's bin directory, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def missing_reason() -> str | None:
    """Why no server can be started here (None: it can)."""
    if pg_bin() is None:
        return ("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install Debian's "
                "`postgresql` package (scripts/apt-packages.txt; scripts/setup.sh does it as root)")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without `runuser`: the PostgreSQL server refuses to run as root"
    return None


class PgServer:
    """One cluster; `url(db)` gives a connection URL, `create_db()` a fresh database's URL."""

    def __init__(self, *, fsync: bool = False, port: int | None = None) -> None:
        reason = missing_reason()
        if reason:
            raise RuntimeError(reason)
        self.bin = pg_bin()
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ef-pg-"))
        self.data = self.dir / "data"
        self._names = itertools.count()
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            owner = "postgres" if _has_user("postgres") else "nobody"
            self._run_as = ["runuser", "-u", owner, "--"]
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, owner)
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._run_as:
            shutil.chown(pwfile, self._run_as[2])
        self._cmd([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile),
                   "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
        pwfile.unlink()
        chosen = port is not None
        for attempt in range(5):  # a free port can be taken between free_port() and postgres binding it
            self._opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
                          f" -c fsync={'on' if fsync else 'off'} -c full_page_writes={'on' if fsync else 'off'}")
            try:
                self.start()
                return
            except RuntimeError as exc:
                if chosen or "already in use" not in str(exc) or attempt == 4:
                    raise
                self.port = free_port()

    def start(self) -> None:
        """Start the server (again, after `halt`): same port, same data."""
        self._cmd([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
                   "-o", self._opts, "-w", "-t", "60", "start"])

    def halt(self) -> None:
        """Stop the server, keeping its data (`start` brings it back): an outage for a test."""
        self._cmd([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def _cmd(self, argv: list[str]) -> None:
        out = subprocess.run(self._run_as + argv, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            log = (self.dir / "server.log").read_text() if (self.dir / "server.log").exists() else ""
            raise RuntimeError(f"{Path(argv[0]).name} failed ({out.returncode}): {out.stderr.strip()} {log[-2000:]}")

    def url(self, db: str = "postgres", *, password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{db}"

    def create_db(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._cmd([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
