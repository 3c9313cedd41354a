"""What a `--db` names: a SQLite file path, or a PostgreSQL URL (postgresql://user:password@host:port/db).

Pure string handling, so the commands can tell the two apart without importing a database driver,
and so no log line or error message ever carries a password (`mask_url`).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

PG_SCHEMES = ("postgresql://", "postgres://")


def is_db_url(db: str | Path | None) -> bool:
    """True when `db` is a PostgreSQL URL rather than a SQLite file path."""
    return isinstance(db, str) and db.strip().lower().startswith(PG_SCHEMES)


def mask_url(db: str | Path) -> str:
    """`db` fit for logs and messages: a URL's password (in the user part or as ?password=) becomes ***.
    Plain string work, no URL parser, so a malformed URL is masked too (and on the safe side: all
    before the last `@` ahead of the query is user information)."""
    if not is_db_url(db):
        return str(db)
    scheme, rest = str(db).strip().split("://", 1)
    q = rest.find("?")
    q = len(rest) if q < 0 else q
    at = rest.rfind("@", 0, q)
    if at >= 0:
        user = rest[:at].split(":", 1)[0]
        rest = f"{user}:***{rest[at:]}" if ":" in rest[:at] else rest
    head, sep, query = rest.partition("?")
    return f"{scheme}://{head}{sep}" + _PASSWORD_PARAM.sub(r"\1***", query)


_PASSWORD_PARAM = re.compile(r"((?:^|&)password=)[^&#]*", re.IGNORECASE)


# a password long enough that finding it verbatim in a message means it is the password, not a word
# or a number of the message ("p" is in "port", "1" in "port 1"): shorter ones are masked only where
# they stand as a password (a URL's user information, password=...)
MIN_VERBATIM_SECRET = 8
_URL_USERINFO = re.compile(r"((?:postgres|postgresql)://[^\s:/@?#'\"]*:)[^\s@/?#'\"]*(@)", re.IGNORECASE)
_PASSWORD_WORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s&#,;)]+)", re.IGNORECASE)


def scrub(text: str, db: str | Path) -> str:
    """`text` (a driver's error message, which may quote the URL it was given) with the URL masked and
    the password replaced by *** where it stands as one: the user information of any postgresql:// URL,
    `USER:PASSWORD@`, a `password=` setting, and anywhere verbatim when it is at least
    MIN_VERBATIM_SECRET characters long. A short password is never replaced inside ordinary words
    (that garbled "port" into "***ort" and told the reader the password was "p")."""
    if not is_db_url(db):
        return text
    url = str(db).strip()
    text = text.replace(url, mask_url(url))
    rest = url.split("://", 1)[1]
    q = rest.find("?")
    q = len(rest) if q < 0 else q
    at = rest.rfind("@", 0, q)
    user, secrets = "", []
    if at >= 0 and ":" in rest[:at]:
        user, secret = rest[:at].split(":", 1)
        secrets.append(secret)
    secrets += [m.group(0).split("=", 1)[1] for m in _PASSWORD_PARAM.finditer(rest[q + 1:])]
    secrets += [unquote(x) for x in secrets if unquote(x) != x]  # the driver may quote it decoded
    text = _URL_USERINFO.sub(r"\1***\2", text)
    text = _PASSWORD_WORD.sub(r"\1***", text)
    for secret in sorted({x for x in secrets if x}, key=len, reverse=True):
        if user:
            text = text.replace(f"{user}:{secret}@", f"{user}:***@")
        if len(secret) >= MIN_VERBATIM_SECRET:
            text = text.replace(secret, "***")
    return text


__all__ = ["PG_SCHEMES", "is_db_url", "mask_url", "scrub"]
