"""Settings: defaults, environment, overrides, and exact errors."""

from __future__ import annotations

import pytest

from edgefleet.service.config import ConfigError, load_settings, parse_broker_url


def test_environment_and_overrides() -> None:
    s = load_settings({"EDGEFLEET_BATCH_MAX": "200", "EDGEFLEET_BROKER_URL": "mqtt://broker:1884",
                       "EDGEFLEET_RETENTION_DAYS": "2.5", "EDGEFLEET_DB": ""}, batch_max=None, alarm_k=2)
    assert (s.batch_max, s.broker_host_port, s.retention_days, s.alarm_k, s.db) == \
        (200, ("broker", 1884), 2.5, 2, "var/edgefleet.db")
    assert load_settings({"EDGEFLEET_BATCH_MAX": "200"}, batch_max=300).batch_max == 300
    assert load_settings({}, ingest_group="").ingest_group == ""


@pytest.mark.parametrize("env, overrides, message", [
    ({"EDGEFLEET_BATCH_MAX": "lots"}, {}, "EDGEFLEET_BATCH_MAX='lots': expected a int"),
    ({}, {"broker_url": "http://x"}, "scheme must be mqtt://"),
    ({}, {"broker_url": "mqtt://x:99999"}, "port must be a number"),
    ({}, {"batch_max": 5000}, "batch_max must be 1..receive_max (2000)"),
    ({}, {"receive_max": 70000}, "16-bit"),
    ({}, {"alarm_k": 6}, "1 <= k <= n"),
    ({}, {"ingest_group": "a/b"}, "without '/'"),
    ({}, {"mqtt_version": "4"}, "auto, 5 or 3.1.1"),
    ({}, {"sqlite_sync": "sometimes"}, "OFF, NORMAL, FULL or EXTRA"),
    ({}, {"no_such_setting": 1}, "unknown settings"),
])
def test_bad_settings_are_refused_with_a_clear_message(env, overrides, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_settings(env, **overrides)


def test_broker_url_forms() -> None:
    assert parse_broker_url("mqtt://127.0.0.1") == ("127.0.0.1", 1883)
    assert parse_broker_url("localhost:1999") == ("localhost", 1999)
