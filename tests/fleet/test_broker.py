"""Broker handles: Mosquitto restart on the same port, kill, the amqtt fallback, bad requests."""

from __future__ import annotations

import socket

import pytest

from edgefleet.service.broker import (
    BrokerError,
    mosquitto_config,
    start_broker,
    wait_port,
)


def test_mosquitto_restart_keeps_port_and_kill_stops_it(tmp_path) -> None:
    with start_broker(prefer="mosquitto", persistence_dir=tmp_path / "p", workdir=tmp_path / "w") as b:
        assert b.kind == "mosquitto" and b.mqtt_version == "5" and b.running()
        pid = b.pid
        b.restart()
        assert b.running() and b.pid != pid and wait_port(b.host, b.port, 5)
        assert (tmp_path / "p" / "mosquitto.db").exists()  # written on the clean stop
        b.kill()
        assert not b.running()
        with pytest.raises(OSError):
            socket.create_connection((b.host, b.port), timeout=1).close()


def test_amqtt_fallback_and_bad_requests() -> None:
    with start_broker(prefer="amqtt") as b:
        assert b.kind == "amqtt" and b.mqtt_version == "3.1.1" and wait_port(b.host, b.port, 5)
    assert not b.running()
    with pytest.raises(BrokerError, match="prefer must be"):
        start_broker(prefer="rabbit")


def test_config_raises_the_limits_that_lose_messages() -> None:
    conf = mosquitto_config("127.0.0.1", 1883, None, None)
    assert "max_queued_messages 1000000" in conf and "max_inflight_messages 0" in conf
    assert "persistence false" in conf


def test_tls_listener_config_and_missing_pki(tmp_path) -> None:
    from edgefleet.service.broker import TlsListener

    tls = TlsListener(8883, tmp_path / "ca.crt", tmp_path / "server.crt", tmp_path / "server.key",
                      require_certificate=True)
    conf = mosquitto_config("127.0.0.1", 1883, None, None, tls)
    assert "listener 1883 127.0.0.1" in conf and "listener 8883 127.0.0.1" in conf
    assert conf.startswith("per_listener_settings true") and conf.rstrip().endswith("allow_anonymous false")
    wide = mosquitto_config("0.0.0.0", 1883, None, None, tls)  # plant-facing TLS, the plain listener stays local
    assert "listener 1883 127.0.0.1" in wide and "listener 8883 0.0.0.0" in wide
    assert "listener 1883 0.0.0.0" in mosquitto_config("0.0.0.0", 1883, None, None)  # no TLS: as asked
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert "listener 8883" not in mosquitto_config("127.0.0.1", 1883, None, None)  # plain stays the default
    with pytest.raises(BrokerError, match="pki init"):
        TlsListener.from_pki(tmp_path / "nothing", 8883)
    with pytest.raises(BrokerError, match="needs Mosquitto"):
        start_broker(prefer="amqtt", tls=tls)
