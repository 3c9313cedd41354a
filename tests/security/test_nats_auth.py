"""The NATS accounts `edgefleet pki nats-users` writes (pure parts; tests/deploy/test_nats_tls.py runs them
on a real nats-server): one user per valid client certificate, devices confined to their own subjects."""

from __future__ import annotations

import pytest

from edgefleet.errors import ConfigError
from edgefleet.service import nats_auth, pki


def test_topics_become_subjects_as_nats_converts_them():
    assert nats_auth.subject("ef/v1/press-07/ota/state") == "ef.v1.press-07.ota.state"
    assert nats_auth.subject("ef/v1/line.3-press/result") == "ef.v1.line//3-press.result"  # 2.10's '.' rule


def test_users_from_the_pki_skip_revoked_and_admin_and_say_why(tmp_path):
    d = tmp_path / "pki"
    pki.init(d, server_names=["localhost"])
    for name in ("press-07", "line.3-press", "ef-ingest-1", "ef-ota", "ef-admin", "gone"):
        pki.issue(d, name)
    pki.revoke(d, "gone")
    services, devices, warnings = nats_auth.users_from_pki(d)
    assert {u.dn for u in services} == {"CN=ef-ingest-1,O=edgefleet", "CN=ef-ota,O=edgefleet"}
    by_dn = {u.dn: u for u in services + devices}
    assert set(by_dn) == {"CN=press-07,O=edgefleet", "CN=line.3-press,O=edgefleet", "CN=ef-ingest-1,O=edgefleet",
                          "CN=ef-ota,O=edgefleet"}
    dev = by_dn["CN=press-07,O=edgefleet"]
    assert all(s.startswith("ef.v1.press-07.") for s in dev.publish)
    assert "ef.v1.press-07.result" in dev.publish and "ef.v1.press-07.cmd" not in dev.publish
    assert set(dev.subscribe) == {"ef.v1.press-07.cmd", "ef.v1.press-07.ota.offer", "ef.v1.press-07.ota.data",
                                  "$MQTT.sub.>"}
    svc = by_dn["CN=ef-ingest-1,O=edgefleet"]
    assert "ef.v1.>" in svc.subscribe and not any(s.endswith(".result") for s in svc.publish)
    assert any(w.startswith("gone: revoked") for w in warnings)
    assert any(w.startswith("line.3-press:") and "2.9" in w for w in warnings)
    out = tmp_path / "users.conf"
    n, _ = nats_auth.write_users(d, out)
    text = out.read_text()
    assert n == 4 and text.count("{user: ") == 4 and "gone" not in text and "ef-admin" not in text
    services_part, devices_part = text.split("  DEVICES: {")
    assert "CN=ef-ingest-1" in services_part and "CN=press-07" in devices_part  # apart: client ids per account
    assert '{stream: {account: DEVICES, subject: "$MQTT.msgs.ef.v1.*.result"}}' in services_part
    assert '{stream: {account: SERVICES, subject: "$MQTT.msgs.ef.v1.*.cmd"}}' in devices_part


def test_a_pki_without_client_certificates_is_refused(tmp_path):
    pki.init(tmp_path / "pki", server_names=["localhost"])
    with pytest.raises(ConfigError, match="no client certificates"):
        nats_auth.write_users(tmp_path / "pki", tmp_path / "users.conf")
