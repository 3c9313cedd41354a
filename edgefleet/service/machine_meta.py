"""What people say about a machine beyond its node: a friendly name ("Pump 3") and key=value tags
(type=pump, room=B2). Pure checks and merges; the store keeps the result (`Store.set_machine_meta`),
the CLI (`edgefleet machine name|tag`) writes it, the dashboard shows and searches it.

A node's own tags (its status `tags`) are rewritten by every status, so these live apart from them.
"""

from __future__ import annotations

import re

from edgefleet.errors import EdgefleetError

MAX_NAME = 80
MAX_TAGS = 20
MAX_VALUE = 100
TAG_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")


def _printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def check_name(name: str) -> str:
    """A friendly name, trimmed: 1-80 printable characters (no line breaks or control characters)."""
    name = " ".join(str(name).split())
    if not name:
        raise EdgefleetError("a machine name needs at least one visible character")
    if len(name) > MAX_NAME or not _printable(name):
        raise EdgefleetError(f"a machine name is at most {MAX_NAME} printable characters, got {name[:40]!r}...")
    return name


def parse_tag(text: str) -> tuple[str, str]:
    """'key=value' -> (key, value): a key of letters, digits, _ . - (starting with a letter, <= 40) and a
    printable value of 1-100 characters."""
    key, sep, value = str(text).partition("=")
    key, value = key.strip(), " ".join(value.split())
    if not sep or not TAG_KEY.fullmatch(key):
        raise EdgefleetError(f"a tag is key=value with a key of letters, digits, _ . - (e.g. type=pump), got {text[:60]!r}")
    if not value or len(value) > MAX_VALUE or not _printable(value):
        raise EdgefleetError(f"tag {key}: the value is 1-{MAX_VALUE} printable characters, got {value[:40]!r}")
    return key, value


def with_name(meta: dict | None, name: str | None) -> dict:
    """`meta` with its name set (None: removed)."""
    out = {"name": (meta or {}).get("name"), "tags": dict((meta or {}).get("tags") or {})}
    out["name"] = None if name is None else check_name(name)
    return _compact(out)


def with_tags(meta: dict | None, set_: list[str] = (), remove: list[str] = ()) -> dict:
    """`meta` with tags set from 'key=value' texts and keys removed; at most MAX_TAGS tags."""
    out = {"name": (meta or {}).get("name"), "tags": dict((meta or {}).get("tags") or {})}
    for key in remove:
        if key not in out["tags"]:
            raise EdgefleetError(f"no tag {key!r} to remove (tags: {', '.join(sorted(out['tags'])) or 'none'})")
        del out["tags"][key]
    for text in set_:
        k, v = parse_tag(text)
        out["tags"][k] = v
    if len(out["tags"]) > MAX_TAGS:
        raise EdgefleetError(f"at most {MAX_TAGS} tags per machine")
    return _compact(out)


def _compact(meta: dict) -> dict:
    """Without empty parts; {} when nothing is left (the store then forgets the machine's entry)."""
    return {k: v for k, v in meta.items() if v}


def tag_words(tags: dict | None) -> str:
    """'room=B2, type=pump' (sorted), '' for none."""
    return ", ".join(f"{k}={v}" for k, v in sorted((tags or {}).items()))
