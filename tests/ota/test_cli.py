"""`edgefleet ota` against a real registry file."""

import json
import subprocess
import sys


def run(*args, check=True, env=None):
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "ota", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode:
        raise AssertionError(proc.stderr)
    return proc


def model_folder(tmp_path, signing_key, release, version: int = 5):
    """A signed model folder of `version` and the public key file that verifies it."""
    from edgefleet.runtime import keys
    from edgefleet.toolchain.model_folder import ModelFolder

    blob, man, _ = release(version)
    folder = ModelFolder(tmp_path / f"m{version}")
    folder.write("model.efm", blob)
    folder.write("manifest.json", man)
    pub = tmp_path / "pub.pem"
    pub.write_bytes(keys.public_raw(signing_key.public_key()))
    return folder, pub


def test_publish_rollout_status_abort(tmp_path, signing_key, release):
    folder, pub = model_folder(tmp_path, signing_key, release)
    db = tmp_path / "fleet.db"
    assert "published" in run("publish", folder.path, "--public", pub, "--db", db).stdout
    out = run("rollout", "5", "--target", "site=north", "--stages", "10%,100%", "--abort-failures", "20%",
              "--abort-anomaly-shift", "2.5x", "--trial", "2", "--retries", "5", "--offer-resend", "12",
              "--id", "c5", "--db", db).stdout
    assert "campaign c5" in out
    from edgefleet.service.ota.registry import OtaRegistry

    reg = OtaRegistry(db)
    p = reg.campaign("c5").policy  # what the OTA manager in `serve` will run with
    reg.close()
    assert (p.stages, p.abort_failures, p.abort_anomaly_shift, p.trial_s) == ([0.1, 1.0], 0.2, 2.5, 120)
    assert (p.retries, p.offer_resend_s, p.shadow) == (5, 12.0, False)
    status = json.loads(run("status", "--json", "--db", db).stdout)
    (c,) = status["campaigns"]
    assert c["campaign"] == "c5" and c["state"] == "running" and c["by_state"] == {}
    again = run("rollout", "5", "--db", db, check=False)
    assert again.returncode == 2 and "still running" in again.stderr
    assert "aborting" in run("abort", "c5", "--db", db).stdout
    assert json.loads(run("status", "c5", "--json", "--db", db).stdout)["campaigns"][0]["state"] == "aborting"


def test_bad_inputs_are_explained(tmp_path, signing_key, release):
    db = tmp_path / "fleet.db"
    proc = run("rollout", "9", "--db", db, check=False)
    assert proc.returncode == 2 and "not in the registry" in proc.stderr
    proc = run("rollout", "9", "--stages", "50%,10%", "--db", db, check=False)
    assert proc.returncode == 2 and "ascend" in proc.stderr
    proc = run("rollout", "9", "--target", "room=2", "--db", db, check=False)
    assert proc.returncode == 2 and "site=NAME" in proc.stderr
    proc = run("abort", "nope", "--db", db, check=False)
    assert proc.returncode == 2 and "no campaign" in proc.stderr
    for args, says in ((["--abort-failures", "100%"], "abort-failures must be in [0%, 100%)"),
                       (["--abort-anomaly-shift", "1x"], "abort-anomaly-shift must be above 1x"),
                       (["--trial", "-1"], "trial and shadow must be zero or positive"),
                       (["--stage-timeout", "0"], "stage timeout must be positive"),
                       (["--retries", "-1"], "retries must be zero or more"),
                       (["--offer-resend", "0"], "offer-resend positive")):
        proc = run("rollout", "9", *args, "--db", db, check=False)
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)


def test_publish_refuses_a_model_signed_by_another_key(tmp_path, release):
    from edgefleet.runtime import keys
    from edgefleet.toolchain.model_folder import ModelFolder

    other = keys.generate(tmp_path / "other.key")
    blob, man, _ = release(6, key=other)
    folder = ModelFolder(tmp_path / "m6")
    folder.write("model.efm", blob)
    folder.write("manifest.json", man)
    trusted = keys.generate(tmp_path / "trusted.key")
    pub = tmp_path / "trusted.pub"
    pub.write_bytes(keys.public_raw(trusted.public_key()))
    proc = run("publish", folder.path, "--public", pub, "--db", tmp_path / "f.db", check=False)
    assert proc.returncode == 2 and "signature" in proc.stderr
