"""The `edgefleet model` commands end to end, as an engineer runs them."""

import json
import subprocess
import sys

import numpy as np
import pytest


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "edgefleet", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


TRAIN_OUTPUT: dict[str, str] = {}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, cwru_dir):
    out = tmp_path_factory.mktemp("m") / "cwru"
    proc = run("model", "train", "--data", cwru_dir, "--out", out, "--epochs", "80")
    TRAIN_OUTPUT.update(stdout=proc.stdout, stderr=proc.stderr)
    return out


def test_train_prints_no_tensorflow_start_up_chatter(model_dir):
    """TensorFlow's native loader writes absl and oneDNN lines to fd 2 whatever TF_CPP_MIN_LOG_LEVEL
    says; without -v the user sees edgefleet's own lines only."""
    err = TRAIN_OUTPUT["stderr"]
    assert "absl::InitializeLog" not in err and "oneDNN" not in err and "port.cc" not in err, err[:2000]
    assert "edgefleet.model" in err  # our own log lines still come through


def test_train_writes_a_complete_model_folder(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.efm", "manifest.json", "model_int8.tflite", "model_float.tflite",
            "card.json", "card.md"} <= names
    card = json.loads((model_dir / "card.json").read_text())
    fp = card["footprint"]
    assert fp["artifact_bytes"] <= 16 * 1024 and fp["activation_ram_bytes"] <= 1024
    assert card["tflm_arena_bytes"] > 4 * fp["activation_ram_bytes"]
    assert card["latency"]["engine_us_per_window_batched"] > 0


def test_evaluate_json_meets_the_cwru_targets(model_dir, cwru_dir):
    out = json.loads(run("model", "evaluate", model_dir, "--data", cwru_dir, "--json").stdout)
    assert {"auc_int8", "auc_float", "per_file"} <= set(out)
    assert out["auc_int8"] >= 0.99
    assert min(f["auc_int8"] for f in out["per_file"] if f["auc_int8"] is not None) >= 0.95
    assert abs(out["auc_float"] - out["auc_int8"]) <= 0.005
    normal = [f for f in out["per_file"] if f["label"] == "normal"]
    assert normal and normal[0]["windows"] < 20  # only the held-out tail is scored


def test_evaluate_table_and_card(model_dir, cwru_dir):
    table = run("model", "evaluate", model_dir, "--data", cwru_dir).stdout
    assert "or014at6_1hp_198" in table and "overall AUC int8" in table
    card = run("model", "card", model_dir).stdout
    assert "TFLM arena" in card and "activation RAM" in card


def test_import_and_run_match_litert(model_dir, tmp_path):
    from edgefleet.toolchain.litert_ref import infer

    art_path = tmp_path / "x.efm"
    run("model", "import", model_dir / "model_int8.tflite", "--out", art_path)
    x = np.random.default_rng(1).integers(-128, 128, size=(500, 32), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    out = run("model", "run", art_path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy").stdout
    y = np.load(tmp_path / "y.npy")
    assert np.array_equal(y, infer((model_dir / "model_int8.tflite").read_bytes(), x))
    from edgefleet.runtime.engine import available_backends

    assert f"engine backend {available_backends()[0]}" in out
    # another backend, chosen on the command line: the same bits, and it says which one ran
    out = run("model", "run", art_path, "--input", tmp_path / "x.npy", "--output", tmp_path / "z.npy",
              "--engine", "numpy").stdout
    assert "engine backend numpy" in out and np.array_equal(np.load(tmp_path / "z.npy"), y)


def test_keys_verify_the_trained_manifest(model_dir):
    assert "self-test passed" in run("keys", "verify", model_dir).stdout


@pytest.mark.parametrize("problem, message", [
    ("nan", "NaN"), ("short", "fewer than one"), ("rate", "Nyquist"), ("nolabel", "has no label: a recording must hold signal"),
    ("csv", "not a readable .npz recording (a .npz is a zip"),
    ("rpm", "rpm 12 is implausible"), ("short_v2", r"fewer than one 1.043 s window (12512 samples, feature definition v2)"),
])
def test_bad_recordings_get_clear_errors(tmp_path, problem, message):
    rng = np.random.default_rng(0)
    sig, fs = rng.normal(size=24000).astype(np.float32), 12000
    if problem == "nan":
        sig[100] = np.nan
    if problem == "short":
        sig = sig[:500]
    if problem == "rate":
        fs = 4000
    d = tmp_path / "data"
    d.mkdir()
    extra = {} if problem == "nolabel" else {"label": "normal"}
    if problem == "rpm":
        extra["rpm"] = 12.0
    if problem == "short_v2":  # two seconds: five v1 windows' worth, but its training span is < one v2 window
        sig = sig[:12000]
    np.savez(d / "rec.npz", signal=sig, fs=fs, **extra)
    if problem == "csv":  # a text export saved under the .npz name
        (d / "rec.npz").write_text("t,accel\n0,0.1\n")
    version = ["--features", "v2"] if problem == "short_v2" else []
    proc = run("model", "train", "--data", d, "--out", tmp_path / "m", "--epochs", "1", *version, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_run_rejects_float_input_and_corrupt_artifact(model_dir, tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((3, 32), np.float32))
    proc = run("model", "run", model_dir, "--input", tmp_path / "f.npy", "--output", tmp_path / "o.npy",
               check=False)
    assert proc.returncode == 2 and "int8" in proc.stderr
    (tmp_path / "t.npy").write_text("0,1,2\n")  # text under the .npy name: no advice to unpickle it
    proc = run("model", "run", model_dir, "--input", tmp_path / "t.npy", "--output", tmp_path / "o.npy",
               check=False)
    assert proc.returncode == 2 and "is not a .npy file" in proc.stderr and "pickle" not in proc.stderr
    bad = bytearray((model_dir / "model.efm").read_bytes())
    bad[200] ^= 0xFF
    (tmp_path / "bad.efm").write_bytes(bytes(bad))
    np.save(tmp_path / "i.npy", np.zeros((3, 32), np.int8))
    proc = run("model", "run", tmp_path / "bad.efm", "--input", tmp_path / "i.npy", "--output",
               tmp_path / "o.npy", check=False)
    assert proc.returncode == 2 and "CRC" in proc.stderr
    assert not (tmp_path / "o.npy").exists()


def test_import_refuses_other_ops(tmp_path):
    from edgefleet.toolchain.testmodels import make_tflite_with_op

    (tmp_path / "conv.tflite").write_bytes(make_tflite_with_op())
    proc = run("model", "import", tmp_path / "conv.tflite", "--out", tmp_path / "c.efm", check=False)
    assert proc.returncode == 2 and "unsupported op" in proc.stderr


def test_help_teaches():
    out = run("model", "train", "--help").stdout
    assert "--data" in out and "examples:" in out and "edgefleet model train --data" in out


def test_train_for_commissioned_nodes_and_evaluate_per_machine(tmp_path):
    """`--commission`: each machine and speed standardized by its own baseline; the card says the
    model expects commissioning and holds the per-machine evaluation."""
    from device_sim.dataset import machine_recordings, write_recordings

    data = tmp_path / "data"
    write_recordings(data, machine_recordings(3, seed=5, speeds=2, normal_s=4.0, fault_s=1.0, fault_g=(1.0, 2.0)))
    out = tmp_path / "m"
    run("model", "train", "--data", data, "--out", out, "--epochs", "3", "--commission", "--no-tflm",
        "--spacing", "log", "--fmin", "200")
    card = json.loads((out / "card.json").read_text())
    assert card["expects_commissioning"] is True
    com = card["evaluation"]["commissioned"]
    assert set(com["machines"]) == {"m05-000", "m05-001", "m05-002"}
    assert all(len(m["classes"]) == 2 for m in com["machines"].values())  # two speeds each
    ev = json.loads(run("model", "evaluate", out, "--data", data, "--commission", "--json").stdout)
    assert ev["commissioned"] and ev["min_machine_auc"] is not None and ev["uncommissioned_windows"] == 0
    assert "expects commissioning | yes" in (out / "card.md").read_text()


def test_train_picks_the_next_free_version_from_the_fleet_database(tmp_path, monkeypatch):
    """A new model must be newer than what the fleet runs or has published, or nodes refuse it."""
    from edgefleet.commands.model import next_free_version
    from edgefleet.protocol import ResultRecord
    from edgefleet.service.ota.registry import OtaRegistry
    from edgefleet.service.store import IngestBatch, SQLiteStore

    db = tmp_path / "fleet.db"
    store = SQLiteStore(db)
    store.write_batch(IngestBatch(ingest_ts=1, results=[ResultRecord("d", "b0000001", 0, 1, 3, 0.1, 1.0, False, 5)]))
    store.close()
    OtaRegistry(db).close()
    assert next_free_version(db) == 4
    monkeypatch.setenv("EDGEFLEET_DB", str(tmp_path / "none.db"))
    assert next_free_version(None) == 1
    proc = run("model", "train", "--data", tmp_path, "--db", tmp_path / "missing.db", "--out", tmp_path / "m",
               check=False)
    assert proc.returncode == 2 and "pass --version N" in proc.stderr
