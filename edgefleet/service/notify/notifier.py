"""The notifier: alarm journal -> routes -> outbox -> channels, one step per `tick`.

1. Route: read the alarm journal (`alarm_events`) after the stored cursor; for each event and each
   matching route and channel, add one outbox row keyed (event, route, channel) and move the
   cursor, in one commit per event. A restart continues at the cursor; the key makes a repeat a
   no-op: each event reaches each route's channel once.
2. Flapping: a `reopened` event is held (not sent) while this alarm had a raised/reopened
   notification on this route and channel within `reopen_every_min`; it goes out when that
   period ends. A `cleared` that follows a held reopen folds both (the operator's last word, that
   the alarm cleared, was right again). A `cleared` goes only where the alarm was announced.
3. Escalate: an active health alarm not acknowledged `escalate_after_min` after it was raised
   (or after its last shelf ended) gets one `escalation` notification per route to the route's
   `escalate_to` channels.
4. Deliver: due rows, oldest first; a failure is retried with exponential backoff (a down channel
   is tried once per tick, its other rows wait) until `give_up_h`, then marked failed. A row is
   not sent (and marked so) when its alarm is shelved, or, for an escalation, acknowledged or
   cleared by then.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from edgefleet.clock import now_ms
from edgefleet.service.notify.channels import DeliveryError, send
from edgefleet.service.notify.config import NotifyConfig, Route
from edgefleet.service.notify.message import build_body, build_digest, encode_body
from edgefleet.service.store.base import SEVERITY_RANK
from edgefleet.service.store.outbox import AlarmEvent, OutboxRow

log = logging.getLogger("edgefleet.service.notify")

ANNOUNCED = ("pending", "held", "sent", "failed")  # a row the operator was (or will be) told
PRUNE_EVERY_MS = 3_600_000
DAY_MS = 86_400_000


def _rank(sev: str) -> int:
    return SEVERITY_RANK.get(sev, 0)


class Notifier:
    """Runs `tick()` every `config.poll_s` in a thread (`start`/`stop`), or by hand in tests."""

    def __init__(self, store, config: NotifyConfig, *, clock_ms: Callable[[], int] = now_ms,
                 sender: Callable = send) -> None:
        self.store = store
        self.config = config
        self.clock_ms = clock_ms
        self.sender = sender
        self.sent = self.failed = 0
        self._down: dict[str, str] = {}  # channel -> the error it last gave
        self._escalated: set[str] = set()
        self._digested: set[str] = set()  # digest keys queued by this process (the outbox key stops repeats too)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self._next_prune = 0

    # ---------- lifecycle ----------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()
        chans = ", ".join(f"{c.name} ({c.type} {c.where})" for c in self.config.channels.values())
        log.info("notifications: %d route(s) to %s; a reopen is notified at most once per %g min",
                 len(self.config.routes), chans, self.config.reopen_every_min)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self._last_error = ""
            except Exception as exc:  # never stop the service; say it once per distinct error
                msg = f"{type(exc).__name__}: {exc}"
                if msg != self._last_error:
                    log.error("notifier step failed: %s (retrying every %g s)", msg, self.config.poll_s)
                self._last_error = msg
            self._stop.wait(self.config.poll_s)

    def tick(self) -> dict[str, int]:
        """One step: route new journal events, queue escalations, deliver what is due."""
        now = self.clock_ms()
        routed = self.route(now)
        escalated = self.escalate(now)
        routed += self.digest(now)
        sent, failed = self.deliver(now)
        if now >= self._next_prune:  # the delivery log follows the store's retention
            self._next_prune = now + PRUNE_EVERY_MS
            self.store.prune_notifications(now - int(self.store.retention_days() * 86_400_000))
        return {"routed": routed, "escalated": escalated, "sent": sent, "failed": failed}

    # ---------- matching ----------

    def _alarm(self, kind: str, alarm_id: int) -> tuple[dict, tuple[str, ...]] | None:
        """The alarm as the message shows it, and its device's tags (None: no such alarm any more)."""
        if kind == "health":
            a = self.store.alarm_by_id(alarm_id)
            if a is None:
                return None
            d = {"id": a.id, "device": a.device, "site": a.site, "line": a.line, "severity": a.severity,
                 "raised_ts": a.raised_ts, "cleared_ts": a.cleared_ts, "acked_ts": a.acked_ts, "acked_by": a.acked_by,
                 "score": a.score, "peak_score": a.peak_score, "thr": a.thr, "reopened": a.reopened,
                 "hint": a.hint, "why": a.why_items}
        else:
            d = self.store.loss_alarm(alarm_id)
            if d is None:
                return None
            d = {**d, "severity": "", "acked_ts": None, "acked_by": None}
        dev = self.store.device(d["device"])
        return d, (dev.tags if dev is not None else ())

    @staticmethod
    def matches(route: Route, kind: str, severity: str, alarm: dict, tags: tuple[str, ...],
                event: str | None = None) -> bool:
        if kind not in route.kinds or (event is not None and event not in route.events):
            return False
        if route.sites and (alarm.get("site") or "") not in route.sites:
            return False
        if route.lines and (alarm.get("line") or "") not in route.lines:
            return False
        if route.tags and not set(route.tags) & set(tags):
            return False
        # a clear passes whatever its severity: it goes where the alarm was announced (`_decide`), also when
        # the severity stepped down below the route's minimum before the machine recovered
        return kind != "health" or event == "cleared" or _rank(severity) >= _rank(route.min_severity)

    def _shelved(self, kind: str, alarm_id: int, now: int) -> bool:
        return bool(self.store.shelves(kind=kind, alarm_id=alarm_id, active_at=now, limit=1))

    # ---------- 1. route ----------

    def route(self, now: int) -> int:
        cursor = self.store.notify_cursor()
        if cursor is None:  # first run on this store: start after what is there (no history flood)
            cursor = self.store.last_alarm_event_id()
            self.store.route_events(cursor, [])
            if cursor:
                log.info("notifications start after alarm event %d (earlier events are not sent)", cursor)
        added = 0
        while True:
            events = self.store.alarm_events(cursor, 200)
            if not events:
                return added
            for ev in events:
                added += self.store.route_events(ev.id, self._rows_for(ev, now))
                cursor = ev.id

    def _rows_for(self, ev: AlarmEvent, now: int) -> list[tuple]:
        found = self._alarm(ev.kind, ev.alarm_id)
        if found is None:
            return []
        alarm, tags = found
        if ev.event == "severity" and _rank(ev.severity) <= _rank(ev.detail.get("previous", "")):
            return []  # a severity going down is not news worth a message
        alarm = {**alarm, "severity": ev.severity or alarm["severity"]}
        if ev.event == "raised":  # as it was then: a later clear or reopen has its own event
            alarm.update(cleared_ts=None, reopened=0)
        shelved = self._shelved(ev.kind, ev.alarm_id, now)
        rows = []
        for route in self.config.routes:
            if not self.matches(route, ev.kind, ev.severity, alarm, tags, ev.event):
                continue
            for ch in route.channels:
                state, due = self._decide(ev, route.name, ch, now, shelved)
                if state is None:
                    continue
                key = f"{ev.id}:{route.name}:{ch}"
                body = build_body(key=key, event=ev.event, kind=ev.kind, route=route.name, ts=ev.ts, alarm=alarm,
                                  dashboard_url=self.config.dashboard_url, detail=ev.detail or None)
                rows.append((key, ev.id, ev.kind, ev.alarm_id, ev.device, ev.event, route.name, ch, state, now, due,
                             encode_body(body).decode()))
        return rows

    def _decide(self, ev: AlarmEvent, route: str, ch: str, now: int, shelved: bool) -> tuple[str | None, int]:
        """(state, due) of a new row, or (None, 0) for no row."""
        s = self.store
        if ev.event == "cleared":
            held = s.outbox_last(ev.kind, ev.alarm_id, route, ch, events=("reopened",), states=("held",))
            if held is not None:
                s.outbox_set_state(held.id, "folded", error="cleared again within the quiet period")
                return "folded", now
            told = s.outbox_last(ev.kind, ev.alarm_id, route, ch, states=ANNOUNCED)
            if told is None or told.event == "cleared":
                return None, 0  # never announced here (filtered, shelved), or the clear is known already
        if shelved:
            return "shelved", now
        if ev.event == "reopened":
            quiet = int(self.config.reopen_every_min * 60_000)
            last = s.outbox_last(ev.kind, ev.alarm_id, route, ch, events=("raised", "reopened"), states=ANNOUNCED)
            if last is not None and now < last.created_ms + quiet:
                return "held", last.created_ms + quiet
        return "pending", now

    # ---------- 3. escalate ----------

    def escalate(self, now: int) -> int:
        routes = [r for r in self.config.routes if r.escalate_after_min > 0 and "health" in r.kinds]
        if not routes:
            return 0
        rows = []
        for a in self.store.alarms(active=True, acked=False, limit=5000):
            shelves = self.store.shelves(kind="health", alarm_id=a.id, limit=50)
            if any(sh.active(now) for sh in shelves):
                continue
            start = max([a.raised_ts] + [sh.end_ts for sh in shelves])
            for route in routes:
                after_ms = int(route.escalate_after_min * 60_000)
                if now - start < after_ms:
                    continue
                todo = [ch for ch in route.escalate_to if self._new_escalation(a.id, route.name, ch)]
                if not todo:
                    continue
                found = self._alarm("health", a.id)
                if found is None or not self.matches(route, "health", a.severity, *found):
                    continue
                for ch in todo:
                    key = f"esc:{a.id}:{route.name}:{ch}"
                    body = build_body(key=key, event="escalation", kind="health", route=route.name, ts=now,
                                      alarm=found[0], dashboard_url=self.config.dashboard_url,
                                      detail={"after_min": route.escalate_after_min})
                    rows.append((key, None, "health", a.id, a.device, "escalation", route.name, ch, "pending", now,
                                 now, encode_body(body).decode()))
                    self._escalated.add(key)
        return self.store.route_events(None, rows) if rows else 0

    def _new_escalation(self, alarm_id: int, route: str, ch: str) -> bool:
        key = f"esc:{alarm_id}:{route}:{ch}"
        if key in self._escalated:
            return False
        if self.store.outbox_last("health", alarm_id, route, ch, events=("escalation",)) is not None:
            self._escalated.add(key)
            return False
        return True

    # ---------- 3b. daily digest ----------

    def digest(self, now: int) -> int:
        """Queue each route's digest once per UTC day, at its `digest_utc` or at the first tick after it
        (a service that was down at 07:00 sends it when it is back, still once: the outbox key holds the date)."""
        rows = []
        day = now - now % DAY_MS
        for route in self.config.routes:
            if not route.digest_utc:
                continue
            hh, mm = map(int, route.digest_utc.split(":"))
            if now < day + (hh * 60 + mm) * 60_000:
                continue
            date = datetime.fromtimestamp(day / 1000, timezone.utc).strftime("%Y-%m-%d")
            todo = [ch for ch in route.channels if f"digest:{date}:{route.name}:{ch}" not in self._digested]
            if not todo:
                continue
            summary = self.digest_summary(route, now)
            for ch in todo:
                key = f"digest:{date}:{route.name}:{ch}"
                self._digested.add(key)
                body = build_digest(key=key, route=route.name, ts=now, summary=summary,
                                    dashboard_url=self.config.dashboard_url)
                rows.append((key, None, "digest", 0, "", "digest", route.name, ch, "pending", now, now,
                             encode_body(body).decode()))
        return self.store.route_events(None, rows) if rows else 0

    def digest_summary(self, route: Route, now: int) -> dict:
        """What the digest says for one route: its active alarms (the route's sites, lines, tags and
        minimum severity), how many are unacknowledged, raised and cleared in the last 24 h, and the
        data-loss alarms active."""
        verdicts: dict[int, bool] = {}  # an alarm is on several of the lists below: looked up once

        def fits(a) -> bool:
            if a.id not in verdicts:
                found = self._alarm("health", a.id)
                verdicts[a.id] = found is not None and self.matches(route, "health", a.severity, *found)
            return verdicts[a.id]

        health = "health" in route.kinds
        active = [a for a in self.store.alarms(active=True, limit=5000) if fits(a)] if health else []
        recent = [a for a in self.store.alarms(since_ms=now - DAY_MS, limit=5000) if fits(a)] if health else []
        cleared = [a for a in self.store.alarms(active=False, limit=5000)
                   if a.cleared_ts is not None and a.cleared_ts >= now - DAY_MS and fits(a)] if health else []
        loss = 0
        if "data-loss" in route.kinds:
            for d in self.store.loss_alarms(active=True):
                found = self._alarm("data-loss", d["id"])
                loss += found is not None and self.matches(route, "data-loss", "", *found)
        return {"active": [{"id": a.id, "device": a.device, "site": a.site, "severity": a.severity,
                            "raised_ts": a.raised_ts, "acked_by": a.acked_by}
                           for a in sorted(active, key=lambda a: (-_rank(a.severity), a.raised_ts))],
                "unacknowledged": sum(a.acked_ts is None for a in active),
                "raised_24h": sum(a.raised_ts >= now - DAY_MS for a in recent),
                "cleared_24h": len(cleared),
                "data_loss_active": loss}

    # ---------- 4. deliver ----------

    def deliver(self, now: int) -> tuple[int, int]:
        sent = failed = 0
        tried_down: set[str] = set()  # failed in this tick: their other rows wait for the next retry
        while not self._stop.is_set():
            rows = self.store.outbox_due(now, 200, tuple(sorted(tried_down)))
            if not rows:
                break
            for row in rows:  # each row is sent, marked, pushed back, or its channel is skipped from now on
                if row.channel in tried_down:
                    continue
                s, f = self._deliver_one(row, now, tried_down)
                sent, failed = sent + s, failed + f
        return sent, failed

    def _deliver_one(self, row: OutboxRow, now: int, tried_down: set[str]) -> tuple[int, int]:
        """(sent, given up) for one due row; a failing channel joins `tried_down`."""
        skip = self._skip_reason(row, now)
        if skip is not None:
            self.store.outbox_set_state(row.id, skip)
            return 0, 0
        ch = self.config.channels.get(row.channel)
        if ch is None:  # the config no longer has it
            self.store.outbox_set_state(row.id, "failed", error=f"channel {row.channel!r} is not configured")
            return 0, 0
        try:
            self.sender(ch, json.loads(row.body))
        except DeliveryError as exc:
            tried_down.add(row.channel)
            return 0, self._failed(row, str(exc), now)
        self.store.outbox_set_state(row.id, "sent", ts=self.clock_ms(), attempt=True)
        self.sent += 1
        if row.channel in self._down:
            log.info("channel %s delivers again", row.channel)
            del self._down[row.channel]
        if row.kind == "digest":
            log.info("notified %s: daily digest (route %s)", row.channel, row.route)
        else:
            log.info("notified %s: %s %s alarm %d of %s (route %s)", row.channel, row.event, row.kind, row.alarm_id,
                     row.device, row.route)
        return 1, 0

    def _skip_reason(self, row: OutboxRow, now: int) -> str | None:
        if self._shelved(row.kind, row.alarm_id, now):
            return "shelved"
        if row.event == "escalation":
            a = self.store.alarm_by_id(row.alarm_id)
            if a is None or a.acked_ts is not None:
                return "acknowledged"
            if a.cleared_ts is not None:
                return "folded"
        return None

    def _failed(self, row: OutboxRow, error: str, now: int) -> int:
        c = self.config
        if now - row.created_ms >= c.give_up_h * 3_600_000:
            self.store.outbox_set_state(row.id, "failed", error=error, attempt=True)
            self.failed += 1
            log.error("gave up notifying %s of %s alarm %d (%s) after %g h: %s", row.channel, row.kind, row.alarm_id,
                      row.event, c.give_up_h, error)
            return 1
        delay_s = min(c.retry_max_s, c.retry_min_s * 2 ** min(row.attempts, 30))
        self.store.outbox_set_state(row.id, row.state, error=error, due_ms=now + int(delay_s * 1000), attempt=True)
        if self._down.get(row.channel) != error:
            log.warning("channel %s failed: %s; retrying with backoff (next in %.0f s)", row.channel, error, delay_s)
        self._down[row.channel] = error
        return 0


__all__ = ["Notifier"]
