"""Canonical JSON for protocol v1: the exact bytes a C encoder must also produce.

Rules (docs/protocol.md, "Canonical form"):
- UTF-8, no whitespace, separators `,` and `:`;
- object keys in the order of the schema's `properties`; absent optional keys omitted;
- `integer` fields as plain decimal; `number` fields as C `printf("%.6g")`, with zero
  (and negative zero) written `0`; booleans `true`/`false`;
- strings in double quotes with `\\` and `"` escaped (v1 strings are printable ASCII
  by schema, so no other escape is ever needed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Encoder = Callable[[Any], str]

NUMBER_FORMAT = "%.6g"


def format_number(x: float) -> str:
    """A JSON `number` field: 6 significant digits, exactly like C's printf("%.6g")."""
    if x == 0:
        return "0"
    return NUMBER_FORMAT % x


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
        return format_number
    if tname == "boolean":
        return lambda v: "true" if v else "false"
    if tname == "string":
        return format_string
    raise ValueError(f"no canonical form for type {tname!r}")
