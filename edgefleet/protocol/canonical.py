"""Canonical JSON for protocol v1: the exact bytes a C encoder must also produce.

Rules (docs/protocol.md, "Canonical form"):
- UTF-8, no whitespace, separators `,` and `:`;
- object keys in the order of the schema's `properties`; absent optional keys omitted;
- `integer` fields as plain decimal; `number` fields as C `printf("%.6g")` (or the precision
  the field's `x-canonical` names, e.g. `%.4g` for `vrms`), with zero (and negative zero)
  written `0`; booleans `true`/`false`;
- strings in double quotes with `\\` and `"` escaped (v1 strings are printable ASCII
  by schema, so no other escape is ever needed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Encoder = Callable[[Any], str]

NUMBER_FORMAT = "%.6g"
_FORMAT_RE = re.compile(r"%\.([1-9])g")


def format_number(x: float, fmt: str = NUMBER_FORMAT) -> str:
    """A JSON `number` field: 6 significant digits, exactly like C's printf("%.6g") (or `fmt`,
    a field's `x-canonical` precision such as "%.4g"); zero of either sign is "0"."""
    if x == 0:
        return "0"
    return fmt % x


def number_encoder(schema: dict[str, Any]) -> Encoder:
    """The encoder of a `number` field: %.6g, or the `x-canonical` format the schema gives it."""
    fmt = schema.get("x-canonical", NUMBER_FORMAT)
    if not isinstance(fmt, str) or not _FORMAT_RE.fullmatch(fmt):
        raise ValueError(f"x-canonical must be %.Ng with N of 1-9, got {fmt!r}")
    if fmt == NUMBER_FORMAT:
        return format_number
    return lambda x: format_number(x, fmt)


def format_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def compile_encoder(schema: dict[str, Any]) -> Encoder:
    """Return enc(value) -> canonical JSON text for a value that already passed the schema."""
    tname = schema["type"]
    if tname == "object":
        fields = [(k, format_string(k) + ":", compile_encoder(s)) for k, s in schema["properties"].items()]

        def _object(v: dict) -> str:
            return "{" + ",".join(head + enc(v[k]) for k, head, enc in fields if k in v) + "}"
        return _object
    if tname == "array":
        item = compile_encoder(schema["items"])
        return lambda v: "[" + ",".join(item(x) for x in v) + "]"
    if tname == "integer":
        return lambda v: str(int(v))
    if tname == "number":
        return number_encoder(schema)
    if tname == "boolean":
        return lambda v: "true" if v else "false"
    if tname == "string":
        return format_string
    raise ValueError(f"no canonical form for type {tname!r}")
