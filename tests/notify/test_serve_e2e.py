"""End to end: a real Mosquitto, `edgefleet serve` as a process with a notification config, the
simulator with two machines that develop a fault, and a real webhook receiver checking the HMAC.

- machine A's fault raises an alarm: the receiver gets exactly one signed `raised`;
- A is shelved (`edgefleet alarms shelve`): its escalation never comes;
- the receiver goes down, machine B's alarm is raised, `serve` is restarted meanwhile: once the
  receiver is back, B's `raised` arrives exactly once;
- B stays unacknowledged: exactly one `escalation` after `escalate_after_min`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from testkit import stop_process

from edgefleet.service.broker import mosquitto_binary, start_broker
from edgefleet.service.store import SQLiteStore

from .receivers import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
SECRET = "e2e-hook-secret"
ESCALATE_S = 12  # from B's raise; A is shelved well within it (its CLI call takes a few seconds)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if not mosquitto_binary():
        pytest.fail("mosquitto is not installed: scripts/setup.sh installs it (scripts/apt-packages.txt)")
    work = tmp_path_factory.mktemp("mosquitto-notify")
    with start_broker(prefer="mosquitto", workdir=work, log_file=work / "mosquitto.log") as b:
        yield b


class Serve:
    def __init__(self, broker_url: str, db: Path, conf: Path) -> None:
        env = dict(os.environ, EF_HOOK_SECRET=SECRET, EDGEFLEET_SQLITE_SYNC="NORMAL", EDGEFLEET_STATS_INTERVAL_S="1",
                   EDGEFLEET_SESSION_EXPIRY_S="300", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--broker", broker_url, "--db", str(db),
                                      "--client-id", "ef-ingest-notify-e2e", "--notify-config", str(conf)],
                                     cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60):
            stop_process(self.proc)
            raise AssertionError("serve did not start:\n" + "".join(self.lines[-30:]))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if "subscribed to" in line:
                self.ready.set()

    def stop(self) -> int | None:
        return stop_process(self.proc, 20)


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_fault_to_signed_webhook_outage_restart_escalation_and_shelve(broker, tmp_path) -> None:
    hook = WebhookReceiver(SECRET)
    db, conf = tmp_path / "fleet.db", tmp_path / "notify.toml"
    conf.write_text(f"""
[notify]
poll_s = 0.2
retry_min_s = 0.5
retry_max_s = 2

[channels.ops]
type = "webhook"
url = "{hook.url}"
secret_env = "EF_HOOK_SECRET"
timeout_s = 2

[[routes]]
name = "plant"
channels = ["ops"]
escalate_after_min = {ESCALATE_S / 60}
escalate_to = ["ops"]
""")
    a, b = "nt-0000", "nt-0001"
    serve = Serve(broker.url, db, conf)
    sim = subprocess.Popen([sys.executable, "-m", "edgefleet", "sim", "--broker", broker.url, "--nodes", "2",
                            "--faulty", "0", "--prefix", "nt-", "--no-commission", "--period", "0.25", "--ota-key",
                            "none", "--duration", "150", "--inject", f"{a}:2", "--inject", f"{b}:25"],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    store = None
    try:
        # A's fault: exactly one signed notification
        first = hook.wait(1, timeout=60)[0]
        assert (first["event"], first["alarm"]["device"]) == ("raised", a)
        assert all(ok for _, _, ok in hook.received)
        latency_ms = hook.arrivals[0] - first["alarm"]["raised_ts"]  # the raising window's time: same host clock
        print(f"\nwindow that raised the alarm -> signed webhook received: {latency_ms:.0f} ms")
        assert latency_ms < 5000
        store = SQLiteStore(db)
        a_id = store.active_alarm(a).id
        p = subprocess.run([sys.executable, "-m", "edgefleet", "alarms", "shelve", str(a_id), "--for", "1h",
                            "--reason", "bearing ordered", "--by", "e2e", "--db", str(db)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        # the receiver goes down; B's fault arrives while it is: tried, refused, kept
        hook.stop()
        row = wait_for(lambda: [r for r in store.outbox() if r.device == b and r.attempts >= 1], 60,
                       "a failed attempt to notify B's alarm")[0]
        assert row.event == "raised" and row.state == "pending" and "unreachable" in row.last_error
        # serve restarts while the receiver is down, then the receiver comes back
        assert serve.stop() == 0
        serve = Serve(broker.url, db, conf)
        hook.start()
        got_b = wait_for(lambda: [x for x in hook.bodies("raised") if x["alarm"]["device"] == b], 30, "B's raised")
        assert len(got_b) == 1
        # B stays unacknowledged: one escalation; A is shelved: none
        esc = hook.wait(1, timeout=ESCALATE_S + 40, event="escalation")
        assert [x["alarm"]["device"] for x in esc] == [b]
        time.sleep(3)
        bodies = hook.bodies()
        # a severity step up is news too (B's fault grows; its velocity can reach ISO zone D: critical)
        assert all(x["alarm"]["severity"] in ("major", "critical") for x in bodies if x["event"] == "severity")
        assert sorted((x["event"], x["alarm"]["device"]) for x in bodies
                      if x["alarm"]["device"] in (a, b) and x["event"] != "severity") == \
            [("escalation", b), ("raised", a), ("raised", b)]
        assert len({x["id"] for x in bodies}) == len(bodies)  # nothing delivered twice
        assert all(ok for _, _, ok in hook.received)
        states = {(r.device, r.event): r.state for r in store.outbox()}
        assert states[(a, "raised")] == "sent" and states[(b, "raised")] == "sent"
        assert (a, "escalation") not in states
        log = "".join(serve.lines)
        assert SECRET not in log and "notified ops" in log
    finally:
        stop_process(sim)
        serve.stop()
        hook.stop()
        if store is not None:
            store.close()
