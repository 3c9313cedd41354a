"""ROC AUC of a model, float and int8, per recording and overall.

Normal recordings that the model trained on are scored on their held-out
tail only, so evaluation never sees a training window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from edgefleet.artifact import Artifact
from edgefleet.datasets import Recording, windows_of
from edgefleet.engine import Detector


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
        from edgefleet.litert_ref import infer

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
