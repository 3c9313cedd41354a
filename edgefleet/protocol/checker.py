"""Compile a JSON Schema (the subset protocol v1 uses) into a fast checker function.

`jsonschema` walks the schema on every call and manages ~2k messages/s; ingest needs
more. The schema is compiled once into nested closures that return the first
violation as "path: reason" (or None). Semantics follow JSON Schema 2020-12 exactly
for the keywords below (tests compare against `jsonschema` on golden and fuzzed
input); any other keyword is refused at compile time, so schema and checker cannot
drift apart silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any, str], "str | None"]

# x-canonical: a number field's canonical format when it is not %.6g (canonical.py); no effect on validity
_ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "examples", "x-canonical"}
_SUPPORTED = _ANNOTATIONS | {
    "type", "const", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "items", "minItems", "maxItems", "properties",
    "required", "additionalProperties", "if", "then",
}


class SchemaCompileError(ValueError):
    """The schema uses a keyword or shape this checker does not implement."""


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":  # JSON Schema: 1.0 is an integer
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float))
    raise SchemaCompileError(f"unknown type {name!r}")


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _type_label(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def compile_schema(schema: dict[str, Any]) -> Check:
    """Return check(value, path) -> None if valid, else the first violation as text."""
    unknown = set(schema) - _SUPPORTED
    if unknown:
        raise SchemaCompileError(f"unsupported keywords {sorted(unknown)}")
    if "type" not in schema:
        raise SchemaCompileError("every schema node needs a 'type'")
    tname: str = schema["type"]
    steps: list[Check] = []

    if "const" in schema:
        const = schema["const"]
        steps.append(lambda v, p: None if _json_equal(v, const) else f"{p}: expected {const!r}, got {_shown(v)}")
    if "enum" in schema:
        options = list(schema["enum"])
        steps.append(lambda v, p: None if any(_json_equal(v, o) for o in options)
                     else f"{p}: {_shown(v)} is not one of {options}")
    for key, word in (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"), ("exclusiveMaximum", "<")):
        if key in schema:
            bound = schema[key]
            # Compare exactly (ints stay ints): Python orders int and float correctly.
            cmp = {"minimum": lambda v, b=bound: v >= b, "maximum": lambda v, b=bound: v <= b,
                   "exclusiveMinimum": lambda v, b=bound: v > b, "exclusiveMaximum": lambda v, b=bound: v < b}[key]
            steps.append(lambda v, p, cmp=cmp, word=word, bound=bound:
                         None if cmp(v) else f"{p}: {v!r} is not {word} {bound}")
    if "minLength" in schema:
        n = schema["minLength"]
        steps.append(lambda v, p: None if len(v) >= n else f"{p}: shorter than {n} characters")
    if "maxLength" in schema:
        n2 = schema["maxLength"]
        steps.append(lambda v, p: None if len(v) <= n2 else f"{p}: longer than {n2} characters")
    if "pattern" in schema:
        rx = re.compile(schema["pattern"])
        steps.append(lambda v, p: None if rx.search(v) else f"{p}: {_excerpt(v)} does not match {rx.pattern}")
    if "minItems" in schema:
        lo = schema["minItems"]
        steps.append(lambda v, p: None if len(v) >= lo else f"{p}: fewer than {lo} items")
    if "maxItems" in schema:
        hi = schema["maxItems"]
        steps.append(lambda v, p: None if len(v) <= hi else f"{p}: more than {hi} items")
    if "items" in schema:
        item = compile_schema(schema["items"])

        def _items(v: list, p: str) -> str | None:
            for i, x in enumerate(v):
                err = item(x, f"{p}[{i}]")
                if err:
                    return err
            return None
        steps.append(_items)
    if tname == "object":
        props = {k: compile_schema(s) for k, s in schema.get("properties", {}).items()}
        required = list(schema.get("required", []))
        closed = schema.get("additionalProperties", True) is False
        if schema.get("additionalProperties", False) not in (True, False):
            raise SchemaCompileError("additionalProperties must be true or false")

        def _object(v: dict, p: str) -> str | None:
            for k in required:
                if k not in v:
                    return f"{p}: missing required field {k!r}"
            for k, x in v.items():
                sub = props.get(k)
                if sub is None:
                    if closed:
                        return f"{p}: unexpected field {_excerpt(k)}"
                    continue
                err = sub(x, k if p == "$" else f"{p}.{k}")
                if err:
                    return err
            return None
        steps.append(_object)
        if "if" in schema:
            cond = _compile_condition(schema["if"])
            then = _compile_required_only(schema.get("then", {}), schema["if"])
            steps.append(lambda v, p: then(v, p) if cond(v) else None)
    elif any(k in schema for k in ("properties", "required", "if")):
        raise SchemaCompileError("object keywords on a non-object node")

    def check(value: Any, path: str = "") -> str | None:
        if not _is_type(value, tname):
            return f"{path or '$'}: expected {tname}, got {_type_label(value)}"
        for step in steps:
            err = step(value, path or "$")
            if err:
                return err
        return None
    return check


def _compile_condition(cond: dict[str, Any]) -> Callable[[dict], bool]:
    """`if` as protocol v1 uses it: {"properties": {field: {"const": x}}} (absent field: true)."""
    if set(cond) != {"properties"}:
        raise SchemaCompileError("'if' must only hold 'properties'")
    pairs = []
    for k, sub in cond["properties"].items():
        if set(sub) != {"const"}:
            raise SchemaCompileError("'if' properties must only hold 'const'")
        pairs.append((k, sub["const"]))
    return lambda v: all(k not in v or _json_equal(v[k], c) for k, c in pairs)


def _compile_required_only(then: dict[str, Any], cond: dict[str, Any]) -> Check:
    if set(then) - {"required"}:
        raise SchemaCompileError("'then' must only hold 'required'")
    req = list(then.get("required", []))
    when = ", ".join(f"{k}={c['const']!r}" for k, c in cond["properties"].items())

    def _then(v: dict, p: str) -> str | None:
        for k in req:
            if k not in v:
                return f"{p}: missing field {k!r} (required when {when})"
        return None
    return _then


def _excerpt(s: str, n: int = 40) -> str:
    return repr(s if len(s) <= n else s[:n] + "...")


def _shown(v: Any) -> str:
    """A value in a reason, bounded: a hostile 10 kB string does not make a 10 kB reason."""
    return _excerpt(v) if isinstance(v, str) else repr(v) if len(repr(v)) <= 60 else repr(v)[:60] + "..."


# ---------- the fast path: a generated boolean validator ----------

FastCheck = Callable[[Any], bool]


def compile_fast(schema: dict[str, Any]) -> FastCheck:
    """Generate Python source for valid(value) -> bool and compile it once.

    Sound but strict: True only for values the schema accepts, using exact JSON types
    (what `json.loads` returns). False means "ask `compile_schema`'s checker", which
    has the full semantics and says why; callers use `fast(v) or check(v) is None`.
    """
    consts: dict[str, Any] = {}
    lines = ["def valid(v0):"]
    counter = iter(range(1, 1_000_000))

    def const(value: Any) -> str:
        name = f"_c{len(consts)}"
        consts[name] = value
        return name

    def emit(node: dict[str, Any], var: str, ind: str) -> None:
        t = node["type"]
        out = lines.append
        if t == "object":
            out(f"{ind}if type({var}) is not dict: return False")
            req = node.get("required", [])
            if req:
                out(f"{ind}if " + " or ".join(f"{k!r} not in {var}" for k in req) + ": return False")
            props = node.get("properties", {})
            k, x = f"k{next(counter)}", f"v{next(counter)}"
            out(f"{ind}for {k}, {x} in {var}.items():")
            for i, (name, sub) in enumerate(props.items()):
                out(f"{ind}    {'if' if i == 0 else 'elif'} {k} == {name!r}:")
                emit(sub, x, ind + "        ")
            if node.get("additionalProperties", True) is False:
                out(f"{ind}    {'else' if props else 'if True'}: return False")
            elif not props:
                out(f"{ind}    pass")
            if "if" in node:
                cond = node["if"]["properties"]
                if not all(isinstance(c["const"], str) for c in cond.values()):
                    raise SchemaCompileError("fast path: 'if' consts must be strings")
                test = " and ".join(f"({f!r} not in {var} or {var}[{f!r}] == {c['const']!r})" for f, c in cond.items())
                need = node.get("then", {}).get("required", [])
                if need:
                    out(f"{ind}if {test} and (" + " or ".join(f"{f!r} not in {var}" for f in need) + "): return False")
        elif t == "array":
            out(f"{ind}if type({var}) is not list: return False")
            if "minItems" in node:
                out(f"{ind}if len({var}) < {node['minItems']}: return False")
            if "maxItems" in node:
                out(f"{ind}if len({var}) > {node['maxItems']}: return False")
            if "items" in node:
                x = f"v{next(counter)}"
                out(f"{ind}for {x} in {var}:")
                emit(node["items"], x, ind + "    ")
        elif t in ("integer", "number"):
            if t == "integer":
                out(f"{ind}if type({var}) is not int and not (type({var}) is float and {var}.is_integer()): return False")
            else:
                out(f"{ind}if type({var}) is not int and type({var}) is not float: return False")
            for key, op in (("minimum", "<"), ("maximum", ">"), ("exclusiveMinimum", "<="), ("exclusiveMaximum", ">=")):
                if key in node:
                    out(f"{ind}if {var} {op} {const(node[key])}: return False")
            if "const" in node:
                out(f"{ind}if {var} != {const(node['const'])}: return False")
            if "enum" in node:
                raise SchemaCompileError("fast path: enum on numbers")
        elif t == "string":
            out(f"{ind}if type({var}) is not str: return False")
            if "minLength" in node:
                out(f"{ind}if len({var}) < {node['minLength']}: return False")
            if "maxLength" in node:
                out(f"{ind}if len({var}) > {node['maxLength']}: return False")
            if "pattern" in node:
                out(f"{ind}if not {const(re.compile(node['pattern']).search)}({var}): return False")
            if "enum" in node:
                out(f"{ind}if {var} not in {const(frozenset(node['enum']))}: return False")
            if "const" in node:
                out(f"{ind}if {var} != {const(node['const'])}: return False")
        elif t == "boolean":
            out(f"{ind}if type({var}) is not bool: return False")
            if "const" in node:
                out(f"{ind}if {var} is not {const(node['const'])}: return False")
        else:
            out(f"{ind}return False")

    compile_schema(schema)  # refuses unsupported keywords with the same rules
    emit(schema, "v0", "    ")
    lines.append("    return True")
    namespace: dict[str, Any] = dict(consts)
    exec(compile("\n".join(lines), f"<fast-check {schema.get('title', '?')}>", "exec"), namespace)  # noqa: S102
    fn = namespace["valid"]
    fn.source = "\n".join(lines)
    return fn
