"""ROC AUC of a model, float and int8, per recording and overall.

Normal recordings that the model trained on are scored on their held-out
tail only, so evaluation never sees a training window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from edgefleet.runtime.artifact import Artifact
from edgefleet.toolchain.datasets import Recording, windows_of
from edgefleet.runtime.engine import Detector
from edgefleet.runtime.features import analyze


def roc_auc(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    """P(anomaly score > normal score), ties counting half (Mann-Whitney U)."""
    n0, n1 = len(normal_scores), len(anomaly_scores)
    if n0 == 0 or n1 == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([normal_scores, anomaly_scores]))
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


class FloatScorer:
    """The float `.tflite` through LiteRT, scored like rule 1 but without quantization."""

    def __init__(self, tflite_float: bytes, artifact: Artifact) -> None:
        self.tflite = tflite_float
        self.detector = Detector(artifact)

    def score(self, windows: np.ndarray, fs: float) -> np.ndarray:
        from edgefleet.toolchain.litert_ref import infer

        z = self.detector.standardized(windows, fs).astype(np.float32)
        y = infer(self.tflite, z)
        return np.mean((y - z) ** 2, axis=1).astype(np.float32)


@dataclass
class FileResult:
    name: str
    label: str
    windows: int
    auc_int8: float | None
    auc_float: float | None
    anomaly_rate: float  # share of windows over the threshold (int8)
    median_score: float


def evaluate(artifact: Artifact, tflite_float: bytes | None, recordings: list[Recording], *,
             trained_on: dict[str, float] | None = None) -> dict:
    """Scores every recording; `trained_on` maps a normal recording name to its train fraction."""
    detector = Detector(artifact)
    params = artifact.features.params
    fscorer = FloatScorer(tflite_float, artifact) if tflite_float else None
    trained_on = trained_on or {}
    scored = []
    for rec in recordings:
        start = trained_on.get(rec.name, 0.0) if rec.is_normal else 0.0
        w = windows_of(rec, params, start=start)
        s8, flags = detector.score_windows(w, rec.fs)
        sf = fscorer.score(w, rec.fs) if fscorer else None
        scored.append((rec, s8, sf, flags))
    normal8 = np.concatenate([s for r, s, _, _ in scored if r.is_normal] or [np.empty(0)])
    normalf = np.concatenate([s for r, _, s, _ in scored if r.is_normal and s is not None] or [np.empty(0)])
    per_file = []
    for rec, s8, sf, flags in scored:
        per_file.append(FileResult(
            name=rec.name, label=rec.label, windows=len(s8),
            auc_int8=None if rec.is_normal else roc_auc(normal8, s8),
            auc_float=None if rec.is_normal or sf is None else roc_auc(normalf, sf),
            anomaly_rate=float(flags.mean()), median_score=float(np.median(s8))))
    faults8 = [s for r, s, _, _ in scored if not r.is_normal]
    faultsf = [s for r, _, s, _ in scored if not r.is_normal and s is not None]
    auc8 = roc_auc(normal8, np.concatenate(faults8)) if faults8 else float("nan")
    aucf = roc_auc(normalf, np.concatenate(faultsf)) if faultsf and len(normalf) else float("nan")
    fault_aucs = [f.auc_int8 for f in per_file if f.auc_int8 is not None]
    return {
        "auc_int8": auc8,
        "auc_float": aucf,
        "auc_change": aucf - auc8 if fscorer else None,
        "min_file_auc_int8": min(fault_aucs) if fault_aucs else None,
        "normal_windows": int(len(normal8)),
        "threshold": float(artifact.scoring.threshold),
        "per_file": [vars(f) for f in per_file],
    }


# ---------------------------------------------------------------- with commissioning

def machine_of(rec: Recording, default: str) -> str:
    m = rec.meta.get("machine")
    return str(m) if m is not None else default


def rpm_of(rec: Recording) -> float | None:
    r = rec.meta.get("rpm")
    try:
        r = float(r) if r is not None else None
    except (TypeError, ValueError):
        return None
    return r if r is not None and np.isfinite(r) and r > 0 else None


def features_and_speed(detector: Detector, windows: np.ndarray, rec: Recording) -> tuple[np.ndarray, np.ndarray]:
    """Features of the windows and the running speed (rpm) of each: the recording's `rpm` (a
    tachometer) when it has one, else a v2 front end's estimate from each window's own spectrum,
    else 0 (unknown: one any-speed class), as a node without a speed input does."""
    rpm = rpm_of(rec)
    a = analyze(windows, rec.fs, detector.artifact.features.params)  # type: ignore[union-attr]
    if rpm is not None:
        return a.features, np.full(len(windows), rpm)
    return a.features, np.nan_to_num(a.speed_hz * 60.0, nan=0.0)


def evaluate_commissioned(artifact: Artifact, recordings: list[Recording], *, fraction: float = 0.5,
                          target: int | None = None, folder_name: str = "machine",
                          hop_s: float | None = None) -> dict:
    """Each machine commissions a node on the first `fraction` of each of its normal recordings
    (the node's own `Commissioner`, classes from `rpm`); the rest of its normal recordings and all
    its other recordings are then scored under that baseline.

    A recording names its machine with `machine`; in a folder where no recording does, all of them
    are one machine (a test rig such as CWRU), else a recording without it is a machine of its own.
    The ranking statistic is the node's verdict statistic: the larger of score/threshold and
    HI/HI-threshold of the window's class. `hop_s` overlaps windows (default: back to back, as a
    node takes them) for recordings too short to commission from otherwise (CWRU's normal is 3.6 s)."""
    from edgefleet.runtime import baseline as bl

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"commission fraction must be in (0, 1), got {fraction}")
    detector = Detector(artifact)
    params = artifact.features.params
    anyone = any("machine" in r.meta for r in recordings)
    machines: dict[str, list[Recording]] = {}
    for r in recordings:
        machines.setdefault(machine_of(r, r.name if anyone else folder_name), []).append(r)
    per_machine, pooled, uncommissioned = {}, {}, 0
    pooled_normal = []
    for name, recs in sorted(machines.items()):
        normal = [r for r in recs if r.is_normal]
        if not normal:
            per_machine[name] = {"error": "no normal recording to commission from", "windows": 0}
            continue
        com = bl.Commissioner(params.n_features, target=target or bl.DEFAULT_WINDOWS)

        def hop(r: Recording) -> float:
            return 1.0 if hop_s is None else hop_s * r.fs / detector.window_samples(r.fs)

        for r in normal:
            f, rpms = features_and_speed(detector, windows_of(r, params, stop=fraction, hop_fraction=hop(r)), r)
            for row, rpm in zip(f, rpms):
                com.add(row, float(rpm) if rpm > 0 else None)
        try:
            base = com.finish(detector.score_standardized, frontend=bl.frontend_crc(params), learned_ms=0)
        except bl.BaselineError as exc:
            per_machine[name] = {"error": str(exc), "windows": 0}
            continue
        held, faults, by_label = [], [], {}
        n_unc = 0
        for r in recs:
            w = windows_of(r, params, start=fraction if r.is_normal else 0.0, hop_fraction=hop(r))
            f, rpms = features_and_speed(detector, w, r)
            s = bl.score_windows(base, f, rpms, detector.score_standardized, estimated=rpm_of(r) is None)
            ok = s.cls >= 0
            n_unc += int((~ok).sum())
            item = (s.ratio[ok], s.anom[ok], s.score[ok], s.hi[ok])
            if r.is_normal:
                held.append(item)
            else:
                faults.append(item)
                by_label.setdefault(r.label, []).append(item)
        uncommissioned += n_unc
        cat = lambda items, k: np.concatenate([it[k] for it in items]) if items else np.empty(0)  # noqa: E731
        hn, fa = cat(held, 0), cat(faults, 0)
        pooled_normal.append(hn)
        for label, items in by_label.items():
            pooled.setdefault(label, []).append(cat(items, 0))
        per_machine[name] = {
            "auc_int8": roc_auc(hn, fa) if len(fa) else None,
            "auc_score": roc_auc(cat(held, 2), cat(faults, 2)) if len(fa) else None,
            "auc_hi": roc_auc(cat(held, 3), cat(faults, 3)) if len(fa) else None,
            "false_alarm_rate": float(cat(held, 1).mean()) if len(hn) else None,
            "detection_rate": float(cat(faults, 1).mean()) if len(fa) else None,
            "windows": int(len(hn) + len(fa)), "held_out_normal_windows": int(len(hn)),
            "uncommissioned_windows": n_unc,
            "classes": base.summary()["classes"],
        }
    normal_all = np.concatenate(pooled_normal) if pooled_normal else np.empty(0)
    by_label_auc = {label: roc_auc(normal_all, np.concatenate(v)) for label, v in sorted(pooled.items())}
    aucs = [m["auc_int8"] for m in per_machine.values() if m.get("auc_int8") is not None]
    return {
        "commissioned": True, "commission_fraction": fraction,
        "machines": per_machine,
        "by_label": by_label_auc,
        "min_machine_auc": min(aucs) if aucs else None,
        "uncommissioned_windows": uncommissioned,
    }
