"""Protocol v1 codec: topics, decode/validate with a reason, canonical encode.

Every inbound payload goes through `decode` (or `decode_message` with its topic):
it returns the message as a dict or raises `ProtocolError` whose `code` is one of
REASON_CODES and whose text says exactly what is wrong. Nothing here does I/O
beyond reading the packaged schema files once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from edgefleet.errors import EdgefleetError
from edgefleet.protocol.canonical import Encoder, compile_encoder
from edgefleet.protocol.checker import Check, FastCheck, compile_fast, compile_schema

PROTOCOL_VERSION = 1
TOPIC_ROOT = "ef/v1"
KINDS = ("result", "status", "ota/offer", "ota/req", "ota/data", "ota/state", "cmd", "debug", "summary")
DEVICE_KINDS = ("result", "status", "ota/req", "ota/state", "debug", "summary")  # published by nodes
SERVER_KINDS = ("ota/offer", "ota/data", "cmd")  # published by the back end
INGEST_KINDS = ("result", "status", "ota/state", "debug", "summary")  # what `edgefleet serve` stores
MAX_PAYLOAD = 512 * 1024
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}(?![\s\S])")
REASON_CODES = ("topic", "size", "utf8", "json", "schema", "claim")  # claim: what the service checks (ingest)


class ProtocolError(EdgefleetError):
    """A topic or payload that protocol v1 does not accept; `code` is one of REASON_CODES."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class Message(NamedTuple):
    device: str
    kind: str
    body: dict[str, Any]


class ResultRecord(NamedTuple):
    """One result flattened with its message's header: the row the store keeps."""

    device: str
    boot: str
    seq: int
    ts: int
    model: int
    score: float
    thr: float
    anom: bool
    inf_us: int
    # shadow mode: the candidate model's view of the same window (all None outside shadow mode)
    shadow_model: int | None = None
    shadow_score: float | None = None
    shadow_thr: float | None = None
    shadow_anom: bool | None = None
    # commissioning (docs/baseline.md): "" = judged; "commissioning" / "uncommissioned" / a sensor fault
    # ("sensor_dead", "sensor_saturated", "sensor_dropout": runtime/sensor_check.py) = no verdict
    state: str = ""
    hi: float | None = None  # health indicator (unclipped distance from the class's normal)
    cls: int | None = None  # operating class that judged it
    hi_thr: float | None = None
    dropped: int = 0  # the message's `dropped`: results this boot's ring lost on the node so far
    # readings and why (feature definition v2, docs/protocol.md; None when the node does not send them)
    vrms: float | None = None  # velocity RMS, mm/s, 10-1,000 Hz
    rpm: float | None = None  # running speed the node used
    why: str | None = None  # anomalous only: the result's `why` items as canonical JSON text (`why_items`)
    hint: str | None = None  # anomalous only: fault-type hint (HINTS)

    @property
    def judged(self) -> bool:
        """A verdict the alarms may use: not taken while commissioning or outside every class."""
        return not self.state


HINTS = ("unbalance", "misalignment", "looseness", "bearing_outer_race", "bearing_inner_race", "bearing_ball",
         "bearing", "unknown")
WHY_NAMES = ("vrms", "kurtosis", "crest")
_SHARE_SUM_SLACK = 0.01  # shares are rounded on the node (3 decimals): their sum may pass 1 by a little


def why_items(why: str | list | tuple | None) -> list[dict[str, Any]]:
    """A result's `why` as a list of items, from ResultRecord.why (JSON text) or the items themselves."""
    if why is None or why == "":
        return []
    return list(json.loads(why)) if isinstance(why, str) else [dict(w) for w in why]


def _why_text(items: list[dict[str, Any]]) -> str:
    return _why_encoder()(items)


@cache
def _why_encoder() -> Encoder:
    return compile_encoder(_kind("result").schema["properties"]["res"]["items"]["properties"]["why"])


def _check_why(i: int, r: dict[str, Any]) -> None:
    """The rules on `why`/`hint` JSON Schema cannot state (ProtocolError 'schema')."""
    if not r["anom"]:
        for key in ("why", "hint"):
            if key in r:
                raise ProtocolError("schema", f"res[{i}].{key}: only an anomalous result explains itself (anom is false)")
    why = r.get("why")
    if why is None:
        return
    total, last = 0.0, math.inf
    for j, w in enumerate(why):
        where = f"res[{i}].why[{j}]"
        if "name" in w:
            if "lo" in w or "hi" in w:
                raise ProtocolError("schema", f"{where}: either a band (lo, hi) or a name, not both")
        elif "lo" not in w or "hi" not in w:
            raise ProtocolError("schema", f"{where}: a band needs lo and hi (Hz), or the item a name")
        elif not w["lo"] < w["hi"]:
            raise ProtocolError("schema", f"{where}: band {w['lo']!r}-{w['hi']!r} Hz is empty (lo must be below hi)")
        if w["share"] > last:
            raise ProtocolError("schema", f"{where}.share: {w['share']!r} above the item before it (largest first)")
        last = w["share"]
        total += w["share"]
    if total > 1 + _SHARE_SUM_SLACK:
        raise ProtocolError("schema", f"res[{i}].why: shares add up to {total:.3g}, more than the whole error")


@dataclass(frozen=True)
class _Kind:
    schema: dict[str, Any]
    check: Check  # full semantics, says why
    fast: FastCheck  # generated, exact JSON types only: True means valid
    encode: Encoder

    def reason(self, obj: Any) -> str | None:
        return None if self.fast(obj) else self.check(obj, "")


def _schema_file(kind: str) -> str:
    return kind.replace("/", "_") + ".schema.json"


@cache
def _kind(kind: str) -> _Kind:
    if kind not in KINDS:
        raise ProtocolError("topic", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    text = resources.files("edgefleet.protocol").joinpath(_schema_file(kind)).read_text("utf-8")
    schema = json.loads(text)
    return _Kind(schema, compile_schema(schema), compile_fast(schema), compile_encoder(schema))


def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a kind (a fresh copy)."""
    return json.loads(json.dumps(_kind(kind).schema))


def topic(device: str, kind: str) -> str:
    """`ef/v1/{device}/{kind}`; raises ProtocolError for a bad device id or kind."""
    if not DEVICE_ID_RE.search(device):
        raise ProtocolError("topic", f"device id {device!r} must be 1-64 of [A-Za-z0-9._-]")
    _kind(kind)
    return f"{TOPIC_ROOT}/{device}/{kind}"


def parse_topic(topic_: str) -> tuple[str, str]:
    """Split `ef/v1/{device}/{kind}` into (device, kind) or raise ProtocolError('topic')."""
    parts = topic_.split("/", 3)
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        raise ProtocolError("topic", f"{topic_[:80]!r} is not ef/v1/{{device}}/{{kind}}")
    device, kind = parts[2], parts[3]
    if not DEVICE_ID_RE.search(device):
        raise ProtocolError("topic", f"device id {device[:80]!r} must be 1-64 of [A-Za-z0-9._-]")
    if kind not in KINDS:
        raise ProtocolError("topic", f"unknown kind {kind[:40]!r}")
    return device, kind


def check(kind: str, obj: Any) -> str | None:
    """None if `obj` is a valid message of `kind`, else the first violation ('path: reason')."""
    return _kind(kind).reason(obj)


def validate(kind: str, obj: Any) -> dict[str, Any]:
    """Return `obj` if valid, else raise ProtocolError('schema', reason)."""
    err = _kind(kind).reason(obj)
    if err:
        raise ProtocolError("schema", err)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number that does not fit a double (1e999) would become infinity: refused, as NaN is."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def decode(kind: str, payload: bytes, *, max_size: int = MAX_PAYLOAD) -> dict[str, Any]:
    """Parse and validate one payload of `kind`; ProtocolError says why it is refused."""
    spec = _kind(kind)
    if len(payload) > max_size:
        raise ProtocolError("size", f"payload of {len(payload)} bytes exceeds {max_size}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("utf8", f"not UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("json", str(exc)[:200]) from None
    err = spec.reason(obj)
    if err:
        raise ProtocolError("schema", err)
    return obj


def decode_message(topic_: str, payload: bytes, *, max_size: int = MAX_PAYLOAD) -> Message:
    """Topic and payload together: Message(device, kind, body) or ProtocolError."""
    device, kind = parse_topic(topic_)
    return Message(device, kind, decode(kind, payload, max_size=max_size))


def encode(kind: str, obj: dict[str, Any]) -> bytes:
    """Validate `obj` and return its canonical bytes (what the C encoder produces too)."""
    spec = _kind(kind)
    err = spec.reason(obj)
    if err:
        raise ProtocolError("schema", err)
    return spec.encode(obj).encode("ascii")


def result_records(device: str, body: dict[str, Any]) -> list[ResultRecord]:
    """Flatten a decoded `result` message into one ResultRecord per result.

    Raises ProtocolError('schema') for the rules JSON Schema cannot state: a result's `shadow`
    needs the message's `shadow` (model, thr), and the shadow model differs from the active
    one; a result in a commissioning state has no verdict; `why` and `hint` only on an
    anomalous result, each `why` item a band (lo < hi) or a name, largest share first.
    """
    boot, model, thr = body["boot"], int(body["model"]), float(body["thr"])
    cls = int(body["cls"]) if "cls" in body else None
    hi_thr = float(body["hi_thr"]) if "hi_thr" in body else None
    sh = body.get("shadow")
    sh_model = sh_thr = None
    if sh is None:
        for i, r in enumerate(body["res"]):
            if "shadow" in r:
                raise ProtocolError("schema", f"res[{i}].shadow: the message has no top-level shadow (model, thr)")
    else:
        sh_model, sh_thr = int(sh["model"]), float(sh["thr"])
        if sh_model == model:
            raise ProtocolError("schema", f"shadow.model: {sh_model} is the active model itself")
    out = []
    for i, r in enumerate(body["res"]):
        state = r.get("state", "")
        if state and r["anom"]:
            raise ProtocolError("schema", f"res[{i}]: a window in state {state!r} has no verdict, anom must be false")
        _check_why(i, r)
        s = r.get("shadow")
        shadow = (sh_model, float(s["score"]), sh_thr, bool(s["anom"])) if s else (None, None, None, None)
        out.append(ResultRecord(device, boot, int(r["seq"]), int(r["ts"]), model, float(r["score"]), thr,
                                bool(r["anom"]), int(r["inf_us"]), *shadow, state,
                                float(r["hi"]) if "hi" in r else None, None if state else cls,
                                None if state else hi_thr, int(body["dropped"]),
                                float(r["vrms"]) if "vrms" in r else None, float(r["rpm"]) if "rpm" in r else None,
                                _why_text(r["why"]) if "why" in r else None, r.get("hint")))
    return out


def result_message(boot: str, model: int, thr: float, results: list[dict[str, Any]],
                   dropped: int = 0, shadow: dict[str, Any] | None = None, *, cls: int | None = None,
                   hi_thr: float | None = None) -> dict[str, Any]:
    """Build a `result` body; each result is {seq, ts, score, anom, inf_us[, shadow: {score, anom}][, hi]
    [, state][, vrms][, rpm][, why][, hint]}, `shadow` the candidate's {model, thr} in shadow mode,
    `cls`/`hi_thr` the operating class that judged the results (a commissioned node).

    `vrms` and `rpm` may be NumPy numbers; `why` items may be dicts or objects with `to_message()`
    (`edgefleet.runtime.diagnosis.Contributor`); a `why` or `hint` that is None is left out."""
    body = {"v": PROTOCOL_VERSION, "boot": boot, "model": model, "thr": thr, "dropped": dropped}
    results = [_readings(r) if any(k in r for k in ("vrms", "rpm", "why", "hint")) else r for r in results]
    if shadow is not None:
        body["shadow"] = shadow
    if cls is not None:
        body["cls"] = cls
    if hi_thr is not None:
        body["hi_thr"] = hi_thr
    body["res"] = results
    return body


def _readings(r: dict[str, Any]) -> dict[str, Any]:
    """A result with its readings in wire types: floats, `why` items as dicts, None left out."""
    out = {k: v for k, v in r.items() if not (k in ("vrms", "rpm", "why", "hint") and (v is None or (
        k == "why" and len(v) == 0)))}  # a window with no error to share out has no `why`
    for k in ("vrms", "rpm"):
        if k in out:
            out[k] = float(out[k])
    if "why" in out:
        out["why"] = [w.to_message() if hasattr(w, "to_message") else dict(w) for w in out["why"]]
    return out


MIN_WINDOW_MS = 10  # a summary's n is at most period / MIN_WINDOW_MS: no node scores more than 100 windows a second


class SummaryRecord(NamedTuple):
    """One `summary` message with its device: the row the store keeps and what rollups fold in
    (docs/protocol.md, "summary")."""

    device: str
    boot: str
    seq: int
    ts: int  # end of the period
    period: int  # ms
    model: int
    thr: float
    dropped: int
    n: int
    anom: int
    min: float
    mean: float
    p95: float
    max: float
    vrms: float | None = None
    vrms_max: float | None = None


def summary_record(device: str, body: dict[str, Any]) -> SummaryRecord:
    """A decoded `summary` as a SummaryRecord, after the rules JSON Schema cannot state (ProtocolError
    'schema'): min <= mean <= max, min <= p95 <= max, anom <= n, n <= period / MIN_WINDOW_MS, vrms and
    vrms_max both or neither with vrms <= vrms_max. A hostile node cannot push a count, a mean or a
    percentile into the rollups that its own extremes contradict."""
    n, anom, period = int(body["n"]), int(body["anom"]), int(body["period"])
    lo, mean, p95, hi = (float(body[k]) for k in ("min", "mean", "p95", "max"))
    if anom > n:
        raise ProtocolError("schema", f"anom: {anom} anomalous windows of only {n}")
    if n > period // MIN_WINDOW_MS:
        raise ProtocolError("schema", f"n: {n} windows in {period} ms is more than one per {MIN_WINDOW_MS} ms")
    if not lo <= hi:
        raise ProtocolError("schema", f"min: {lo!r} is above max {hi!r}")
    if not lo <= mean <= hi:
        raise ProtocolError("schema", f"mean: {mean!r} is outside [min, max] = [{lo!r}, {hi!r}]")
    if not lo <= p95 <= hi:
        raise ProtocolError("schema", f"p95: {p95!r} is outside [min, max] = [{lo!r}, {hi!r}]")
    if n == 1 and not lo == mean == p95 == hi:
        raise ProtocolError("schema", "n: one window has one score, but min, mean, p95 and max differ")
    if ("vrms" in body) != ("vrms_max" in body):
        raise ProtocolError("schema", "vrms: vrms and vrms_max come together")
    v = vm = None
    if "vrms" in body:
        v, vm = float(body["vrms"]), float(body["vrms_max"])
        if v > vm:
            raise ProtocolError("schema", f"vrms: mean {v!r} is above vrms_max {vm!r}")
    return SummaryRecord(device, body["boot"], int(body["seq"]), int(body["ts"]), period, int(body["model"]),
                         float(body["thr"]), int(body["dropped"]), n, anom, lo, mean, p95, hi, v, vm)


def summary_of_scores(boot: str, seq: int, ts: int, period: int, model: int, thr: float, scores: list[float],
                      anom: int, dropped: int = 0, vrms: list[float] | None = None) -> dict[str, Any]:
    """A `summary` body from a period's window scores (what a node in summary mode computes): the p95 is
    the nearest-rank one, the ceil(0.95 n)-th smallest, as rollups.quantile and the C node compute it."""
    if not scores:
        raise ValueError("a summary needs at least one window")
    s = sorted(float(x) for x in scores)
    n = len(s)
    rank = max(1, math.ceil(0.95 * n))
    mean = min(max(math.fsum(s) / n, s[0]), s[-1])  # rounding must not push it past an extreme
    body = {"v": PROTOCOL_VERSION, "boot": boot, "seq": seq, "ts": ts, "period": period, "model": model, "thr": thr,
            "dropped": dropped, "n": n, "anom": anom, "min": s[0], "mean": mean, "p95": s[rank - 1], "max": s[-1]}
    if vrms:
        vs = [float(x) for x in vrms]
        body["vrms"] = min(math.fsum(vs) / len(vs), max(vs))
        body["vrms_max"] = max(vs)
    return body
