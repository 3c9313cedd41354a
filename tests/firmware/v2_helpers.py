"""Feature definition v2 artifacts and signals for the firmware tests (no TensorFlow).

A v2 node model here is a small random int8 dense autoencoder (n_features -> 8 -> n_features)
around a real v2 features section: what the C front end and pipeline need, built in a second."""

from __future__ import annotations

import numpy as np

from edgefleet.runtime.artifact import Artifact, FeatureSection, Layer, Scoring
from edgefleet.runtime.features import FeatureParams, low_freq
from edgefleet.runtime.quant import quantize_multiplier


def v2_params(*, n_bands: int = 32, f_lo: float = 100.0, f_hi: float = 5000.0, window_s: float = 0.08,
              **lf_kw) -> FeatureParams:
    """The training defaults of feature definition v2 (TrainConfig front_end=2)."""
    return FeatureParams.spaced(n_bands, f_lo, f_hi, window_s=window_s, lf=low_freq(**lf_kw))


def _layer(n_in: int, n_out: int, in_zp: int, out_zp: int, scale: float, rng) -> Layer:
    w = rng.integers(-20, 21, size=(n_out, n_in)).astype(np.int8)
    m, s = quantize_multiplier(scale)
    return Layer(weights=w, bias=rng.integers(-200, 201, n_out).astype(np.int32),
                 multiplier=np.array([m], np.int32), shift=np.array([s], np.int32),
                 scale=np.array([scale], np.float32), input_zero_point=in_zp, output_zero_point=out_zp)


def v2_artifact(params: FeatureParams, *, mean=None, inv_std=None, seed: int = 0, version: int = 1,
                threshold: float = 0.5) -> Artifact:
    nf = params.n_features
    rng = np.random.default_rng(seed)
    mean = np.zeros(nf, np.float32) if mean is None else np.asarray(mean, np.float32)
    inv_std = np.ones(nf, np.float32) if inv_std is None else np.asarray(inv_std, np.float32)
    layers = [_layer(nf, 8, 0, -5, 0.01, rng), _layer(8, nf, -5, 3, 0.02, rng)]
    return Artifact(layers=layers, input_scale=0.05, input_zero_point=0, output_scale=0.05, output_zero_point=3,
                    model_version=version, features=FeatureSection(params=params, mean=mean, inv_std=inv_std),
                    scoring=Scoring(threshold=threshold))


def standardizing(params: FeatureParams, features: np.ndarray, **kw) -> Artifact:
    """A v2 artifact whose standardization is learnt from `features` (so q spans the int8 range)."""
    f = np.asarray(features, np.float64)
    sd = f.std(axis=0)
    return v2_artifact(params, mean=f.mean(axis=0), inv_std=1.0 / np.where(sd > 1e-3, sd, 1e-3), **kw)


def synthetic(fs: float, seconds: float, *, speed_hz: float = 24.7, dc: float = 0.0, noise: float = 0.02,
              amps=(0.05, 0.03, 0.02), seed: int = 0, bearing: float = 0.0) -> np.ndarray:
    """1x/2x/3x running-speed sines plus white noise, a DC offset (g) and optional bearing ringing."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * fs))) / fs
    x = dc + noise * rng.standard_normal(t.size)
    for h, a in enumerate(amps, start=1):
        x = x + a * np.sin(2 * np.pi * h * speed_hz * t + 0.3 * h)
    if bearing:
        ph = np.mod(t * 107.4, 1.0) / 107.4
        x = x + bearing * np.exp(-ph * 800.0) * np.sin(2 * np.pi * 3000.0 * ph)
    return x.astype(np.float32)
