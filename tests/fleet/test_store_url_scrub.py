"""`scrub`: a PostgreSQL error message loses the password where it stands as one (a URL's user
information, USER:PASSWORD@, password=..., a long password anywhere), but a short password is not
replaced inside the message's ordinary words: that garbled "port" into "***ort" and told the reader
the password was "p"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.service.store.url import scrub

REPO = Path(__file__).resolve().parents[2]
REFUSED = ('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused '
           'Is the server running on that host and accepting TCP/IP connections?')


@pytest.mark.parametrize("password", ["p", "1", "on", "ver"])
def test_a_short_password_leaves_ordinary_words_alone(password):
    db = f"postgresql://u:{password}@127.0.0.1:1/db"
    assert scrub(REFUSED, db) == REFUSED
    quoted = f"cannot use {db} (u:{password}@127.0.0.1) with password={password} in dsn postgres://u:{password}@h/x"
    assert scrub(quoted, db) == ("cannot use postgresql://u:***@127.0.0.1:1/db (u:***@127.0.0.1) with password=*** "
                                 "in dsn postgres://u:***@h/x")


def test_a_long_password_is_masked_wherever_it_appears():
    secret = "S3cretPassw0rd"
    db = f"postgresql://edge:{secret}@db:5432/fleet?sslmode=require"
    out = scrub(f'FATAL: password authentication failed for user "edge" ({secret}); url {db}; '
                f"password='{secret}' host=db; port 5432", db)
    assert secret not in out
    assert out == ('FATAL: password authentication failed for user "edge" (***); url '
                   "postgresql://edge:***@db:5432/fleet?sslmode=require; password=*** host=db; port 5432")


def test_a_query_password_and_a_percent_encoded_one():
    assert scrub("bad dsn: user=u password=p host=h port=1", "postgresql://h/db?password=p&user=u") == \
        "bad dsn: user=u password=*** host=h port=1"
    db = "postgresql://u:long%40secret99@h/db"
    assert scrub("the server said long@secret99 and long%40secret99", db) == "the server said *** and ***"


def test_a_sqlite_path_is_left_alone():
    assert scrub("port p failed", "var/edgefleet.db") == "port p failed"


def test_stats_with_a_short_password_says_the_driver_message_unchanged(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    run = subprocess.run([sys.executable, "-m", "edgefleet", "stats", "--db", "postgresql://u:p@127.0.0.1:1/db"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "postgresql://u:***@127.0.0.1:1/db" in run.stderr
    assert '"127.0.0.1", port 1 failed' in run.stderr and "accepting TCP/IP" in run.stderr and "***ort" not in run.stderr
