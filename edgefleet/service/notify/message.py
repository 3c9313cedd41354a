"""What a notification says: the JSON body (webhook), subject and text (e-mail), the signature.

The body is built once, when the notification is queued, and stored in the outbox: every retry
sends the same bytes, and its `id` (event, route, channel) lets a receiver drop a repeat.

Signature (docs/notifications.md): header `X-Edgefleet-Signature: t=<unix s>,v1=<hex>` where
hex = HMAC-SHA256(secret, "<t>." + body bytes). The time is in the signed text so a captured
request cannot be replayed later than the receiver's tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone

BODY_VERSION = 1
SIGNATURE_HEADER = "X-Edgefleet-Signature"
DELIVERY_HEADER = "X-Edgefleet-Delivery"
EVENT_HEADER = "X-Edgefleet-Event"

_WHAT = {"raised": "alarm raised", "reopened": "alarm reopened", "severity": "alarm severity changed",
         "cleared": "alarm cleared", "escalation": "alarm NOT ACKNOWLEDGED"}


def _utc(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_body(*, key: str, event: str, kind: str, route: str, ts: int, alarm: dict, dashboard_url: str = "",
               detail: dict | None = None) -> dict:
    """The notification as a JSON-able dict. `alarm` holds id, device, site, line, severity,
    raised_ts, cleared_ts, acked_ts, acked_by and kind-specific figures."""
    where = "/".join(x for x in (alarm.get("site"), alarm.get("line")) if x)
    sev = alarm.get("severity") or ""
    label = "data-loss" if kind == "data-loss" else "health"
    text = f"{alarm['device']}{' (' + where + ')' if where else ''}: {label} {_WHAT.get(event, event)}"
    if sev:
        text += f", severity {sev}"
    if kind == "health" and alarm.get("thr"):
        text += f", peak {alarm['peak_score'] / alarm['thr']:.2g}x threshold"
    if kind == "health" and alarm.get("hint") and alarm["hint"] != "unknown":
        text += f", likely {alarm['hint'].replace('_', ' ')}"
        bands = [f"{w['lo']:g}-{w['hi']:g} Hz" if "lo" in w else w.get("name", "") for w in alarm.get("why") or []]
        if bands:
            text += f" ({', '.join(b for b in bands if b)})"
    if kind == "data-loss" and alarm.get("missing") is not None:
        text += f", {alarm['missing']} results missing in the last hour ({alarm.get('rate', 0.0):.1%})"
    if event == "escalation" and detail and detail.get("after_min") is not None:
        text += f", unacknowledged for {detail['after_min']:g} min"
    if alarm.get("reopened"):
        text += f" (reopened {alarm['reopened']}x)"
    body = {"version": BODY_VERSION, "id": key, "event": event, "kind": kind, "route": route, "ts": ts,
            "time": _utc(ts), "text": text,
            "alarm": {**alarm, "raised": _utc(alarm.get("raised_ts")), "cleared": _utc(alarm.get("cleared_ts"))}}
    if detail:
        body["detail"] = detail
    if dashboard_url:  # a machine alarm's link opens the Alarms page with it picked in the Acknowledge form
        body["url"] = dashboard_url.rstrip("/") + "/alarms" + (
            f"?alarm={int(alarm['id'])}" if kind == "health" and str(alarm.get("id", "")).isdigit() else "")
    return body


def encode_body(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def subject_of(body: dict) -> str:
    return f"[edgefleet] {body['text']}"[:200]


def build_digest(*, key: str, route: str, ts: int, summary: dict, dashboard_url: str = "") -> dict:
    """The daily digest of one route as a JSON-able dict. `summary` holds `active` (alarms as
    dicts: id, device, site, severity, raised_ts, acked_by), `raised_24h`, `cleared_24h`,
    `unacknowledged` and `data_loss_active` (counts)."""
    active = summary.get("active", [])
    by_sev = {s: sum(1 for a in active if a.get("severity") == s) for s in ("critical", "major", "warning")}
    sev_text = ", ".join(f"{n} {s}" for s, n in by_sev.items() if n)
    text = (f"daily digest ({route}): {len(active)} active alarm{'s' if len(active) != 1 else ''}"
            + (f" ({sev_text})" if sev_text else "")
            + f", {summary.get('unacknowledged', 0)} unacknowledged; in the last 24 h {summary.get('raised_24h', 0)} "
            f"raised, {summary.get('cleared_24h', 0)} cleared; {summary.get('data_loss_active', 0)} data-loss "
            f"alarm{'s' if summary.get('data_loss_active', 0) != 1 else ''} active")
    body = {"version": BODY_VERSION, "id": key, "event": "digest", "kind": "digest", "route": route, "ts": ts,
            "time": _utc(ts), "text": text,
            "digest": {**summary, "active": [{**a, "raised": _utc(a.get("raised_ts"))} for a in active]}}
    if dashboard_url:
        body["url"] = dashboard_url.rstrip("/") + "/alarms"
    return body


def _digest_lines(body: dict) -> list[str]:
    lines = [body["text"], ""]
    for a in body["digest"]["active"][:50]:
        lines.append(f"- {a.get('severity') or '-':8} {a['device']}{' (' + a['site'] + ')' if a.get('site') else ''}"
                     f" since {a.get('raised') or '-'}{', acknowledged by ' + a['acked_by'] if a.get('acked_by') else ''}")
    more = len(body["digest"]["active"]) - 50
    if more > 0:
        lines.append(f"... and {more} more")
    return lines


def chat_payload(body: dict, fmt: str) -> dict:
    """The notification in a chat tool's incoming-webhook format: Slack (`text` plus a section block
    in mrkdwn) or Microsoft Teams (a message with one Adaptive Card, as Teams workflows accept).
    The edgefleet body's id goes along, so a receiver can still drop a repeat."""
    if body["event"] == "digest":
        lines = _digest_lines(body)
    else:
        a = body["alarm"]
        lines = [body["text"], "", f"{body['kind']} alarm #{a['id']}, raised {a.get('raised') or '-'}"
                 + (f", cleared {a['cleared']}" if a.get("cleared") else "")
                 + (f", acknowledged by {a['acked_by']}" if a.get("acked_by") else "")]
    url = body.get("url")
    if fmt == "slack":
        text = "\n".join(lines) + (f"\n<{url}|Open the dashboard>" if url else "")
        return {"text": f"[edgefleet] {body['text']}"[:3000],
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}],
                "metadata": {"event_type": "edgefleet_" + body["event"], "event_payload": {"id": body["id"]}}}
    if fmt == "teams":
        card: dict = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                      "version": "1.4",
                      "body": [{"type": "TextBlock", "text": f"edgefleet: {body['text']}", "weight": "Bolder",
                                "wrap": True}]
                      + [{"type": "TextBlock", "text": ln, "wrap": True, "spacing": "None"} for ln in lines[2:] if ln]}
        if url:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the dashboard", "url": url}]
        return {"type": "message", "summary": f"edgefleet {body['id']}",
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}
    raise ValueError(f"unknown chat format {fmt!r}")


def email_text(body: dict) -> str:
    if body["event"] == "digest":
        return "\n".join(_digest_lines(body) + (["", body["url"]] if body.get("url") else [])) + "\n"
    a = body["alarm"]
    lines = [body["text"], "", f"event:     {body['event']} ({body['kind']} alarm #{a['id']})",
             f"device:    {a['device']}", f"site/line: {a.get('site') or '-'} / {a.get('line') or '-'}",
             f"severity:  {a.get('severity') or '-'}", f"raised:    {a.get('raised') or '-'}",
             f"cleared:   {a.get('cleared') or '-'}",
             f"acked:     {a.get('acked_by') or 'no'}", f"route:     {body['route']}", f"id:        {body['id']}"]
    if body.get("url"):
        lines += ["", body["url"]]
    return "\n".join(lines) + "\n"


def sign(secret: str, body: bytes, t: int | None = None) -> str:
    """The signature header's value for `body` at unix time `t` (default now)."""
    t = int(time.time()) if t is None else int(t)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """What a receiver does: recompute the HMAC over "<t>." + body, compare in constant time, and
    refuse a signature older (or newer) than `tolerance_s`."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    now = time.time() if now is None else now
    if abs(now - t) > tolerance_s:
        return False
    want = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, given)


__all__ = ["BODY_VERSION", "DELIVERY_HEADER", "EVENT_HEADER", "SIGNATURE_HEADER", "build_body", "build_digest",
           "chat_payload", "email_text",
           "encode_body", "sign", "subject_of", "verify"]
