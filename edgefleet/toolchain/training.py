"""Train an int8 anomaly autoencoder from recordings of normal running.

Keras trains on normal windows only; the held-out tail of each normal recording
sets the default threshold; the converter makes a full-int8 `.tflite`; the
importer turns it into the artifact the nodes run. TensorFlow is imported
inside the functions so that processes which never train stay light.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from edgefleet.errors import DataError
from edgefleet.runtime.artifact import Artifact, FeatureSection
from edgefleet.runtime.features import (
    EXTRA_CREST,
    EXTRA_KURTOSIS,
    EXTRA_VRMS,
    FeatureParams,
    log_band_power,
    low_freq,
)
from edgefleet.toolchain.datasets import Recording, windows_of
from edgefleet.toolchain.tflite_import import import_tflite

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides a model; stored in the model card."""

    n_bands: int = 32
    f_lo_hz: float = 100.0
    f_hi_hz: float = 5000.0
    spacing: str = "linear"
    window_s: float = 0.08
    hidden: list[int] = field(default_factory=lambda: [16, 8, 16])
    epochs: int = 150
    batch_size: int = 32
    learning_rate: float = 2e-3
    train_fraction: float = 0.7  # of each normal recording; the rest is held out
    train_hop: float = 0.25  # window hop during training, as a fraction of the window
    threshold_margin: float = 1.5  # threshold = margin * 99th percentile of held-out scores
    seed: int = 0
    model_version: int = 1
    requant: str = "fp32"
    commission: bool = False  # standardize each machine (and speed class) by its own baseline, as nodes will
    front_end: int = 1  # feature definition: 1 (bearing bands) or 2 (+ running-speed bands, velocity, shape)
    lf_bands: int = 16  # v2: low-frequency bands, log-spaced over lf_lo_hz..lf_hi_hz
    lf_lo_hz: float = 5.0
    lf_hi_hz: float = 150.0
    extras: int = EXTRA_VRMS | EXTRA_KURTOSIS | EXTRA_CREST  # v2: which single-number features

    def feature_params(self) -> FeatureParams:
        if self.front_end not in (1, 2):
            raise DataError(f"feature definition v{self.front_end} does not exist (use 1 or 2)")
        lf = low_freq(self.lf_bands, self.lf_lo_hz, self.lf_hi_hz, extras=self.extras) if self.front_end == 2 else None
        return FeatureParams.spaced(self.n_bands, self.f_lo_hz, self.f_hi_hz,
                                    window_s=self.window_s, spacing=self.spacing, lf=lf)


@dataclass
class TrainedModel:
    config: TrainConfig
    artifact: Artifact
    tflite_int8: bytes
    tflite_float: bytes
    history: list[float]
    val_scores: np.ndarray
    train_windows: int
    val_windows: int
    keras_model: object = None

    def card_config(self) -> dict:
        return asdict(self.config)


def quantize_keras(model, representative: np.ndarray, *, per_channel: bool = True) -> bytes:
    """Full-int8 TFLite (int8 input and output) from a Keras model and representative rows."""
    from edgefleet.toolchain.tf_loader import import_tensorflow

    tf = import_tensorflow()

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rep = np.asarray(representative, np.float32)
    # a random sample across the whole set: the first rows may all come from one machine
    pick = np.random.default_rng(0).permutation(len(rep))[:1000]

    def gen():
        for row in rep[pick]:
            yield [row[None, :]]

    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if not per_channel:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    return bytes(converter.convert())


def normal_split(recordings: list[Recording], params: FeatureParams, cfg: TrainConfig):
    """(train windows, held-out windows) per normal recording, split in time, never overlapping."""
    normals = [r for r in recordings if r.is_normal]
    if not normals:
        labels = sorted({r.label for r in recordings})
        raise DataError(f"no recording labelled 'normal' (labels found: {labels}); training needs normal running")
    train, held = [], []
    for rec in normals:
        train.append((rec, windows_of(rec, params, hop_fraction=cfg.train_hop, stop=cfg.train_fraction)))
        held.append((rec, windows_of(rec, params, start=cfg.train_fraction)))
    return train, held


def commissioned(train: list, held: list, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """Per machine and speed class: standardized by the robust baseline of its own training windows
    (docs/baseline.md), so the model learns what departures from a machine's own normal look like."""
    from edgefleet.runtime import baseline as bl

    groups: dict[tuple[str, int], dict[str, list]] = {}
    centres: dict[str, list[float]] = {}
    for part, pairs in (("train", train), ("held", held)):
        for rec, w in pairs:
            machine = str(rec.meta.get("machine", rec.name))
            rpm = float(rec.meta.get("rpm", 0) or 0)
            known = centres.setdefault(machine, [])
            k = next((i for i, c in enumerate(known) if (c == 0) == (rpm == 0)
                      and (rpm == 0 or abs(rpm - c) <= bl.RPM_TOLERANCE * c)), None)
            if k is None:
                known.append(rpm)
                k = len(known) - 1
            groups.setdefault((machine, k), {"train": [], "held": []})[part].append(log_band_power(w, rec.fs, params))
    z_train, z_held = [], []
    for key, g in groups.items():
        if not g["train"]:
            continue  # held-out windows of a class with no training windows: nothing to standardize by
        f = np.concatenate(g["train"])
        center, spread, _ = bl.robust_stats(bl.to_q10(f))
        z_train.append(bl.standardize(f, center, spread))
        if g["held"]:
            z_held.append(bl.standardize(np.concatenate(g["held"]), center, spread))
    if not z_held:
        raise DataError("no held-out normal windows to set the threshold")
    return np.concatenate(z_train), np.concatenate(z_held)


def features_of(pairs) -> np.ndarray:
    return np.concatenate([log_band_power(w, rec.fs, p) for (rec, w), p in pairs])


def train_model(recordings: list[Recording], cfg: TrainConfig, *, progress=None) -> TrainedModel:
    """Train, quantize and import; `progress(epoch, loss)` is called after each epoch."""
    from edgefleet.toolchain.tf_loader import import_tensorflow

    tf = import_tensorflow()

    params = cfg.feature_params()
    train, held = normal_split(recordings, params, cfg)
    f_train = np.concatenate([log_band_power(w, r.fs, params) for r, w in train])
    f_held = np.concatenate([log_band_power(w, r.fs, params) for r, w in held])
    mean = f_train.mean(axis=0).astype(np.float32)
    std = f_train.std(axis=0).astype(np.float32)
    inv_std = (1.0 / np.maximum(std, 1e-3)).astype(np.float32)
    z_train = (f_train - mean) * inv_std
    z_held = (f_held - mean) * inv_std
    if cfg.commission:
        z_train, z_held = commissioned(train, held, params)
    log.info("training on %d normal windows, %d held out, %d features", len(z_train), len(z_held),
             params.n_features)

    tf.keras.utils.set_random_seed(cfg.seed)
    inputs = tf.keras.Input(shape=(params.n_features,), name="features")
    x = inputs
    for i, units in enumerate(cfg.hidden):
        x = tf.keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    outputs = tf.keras.layers.Dense(params.n_features, name="reconstruction")(x)
    model = tf.keras.Model(inputs, outputs)
    model.compile(optimizer=tf.keras.optimizers.Adam(cfg.learning_rate), loss="mse")

    class _Progress(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if progress:
                progress(epoch + 1, float((logs or {}).get("loss", float("nan"))))

    hist = model.fit(z_train, z_train, epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True,
                     verbose=0, callbacks=[_Progress()])
    tflite_float = bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    tflite_int8 = quantize_keras(model, z_train, per_channel=True)

    section = FeatureSection(params=params, mean=mean, inv_std=inv_std)
    artifact = import_tflite(tflite_int8, model_version=cfg.model_version, features=section,
                             threshold=0.0, requant=cfg.requant)
    from edgefleet.runtime.engine import Int8Engine
    from edgefleet.runtime.features import quantize

    engine = Int8Engine(artifact)
    q_held = quantize(z_held, artifact.input_scale, artifact.input_zero_point)
    val_scores = engine.score(q_held, engine.infer(q_held))
    threshold = float(np.float32(cfg.threshold_margin * np.percentile(val_scores, 99)))
    artifact.scoring.threshold = threshold
    artifact = Artifact.from_bytes(artifact.to_bytes())  # round trip: what the nodes will read
    log.info("threshold %.4g from %d held-out normal windows", threshold, len(val_scores))
    return TrainedModel(config=cfg, artifact=artifact, tflite_int8=tflite_int8,
                        tflite_float=tflite_float, history=[float(v) for v in hist.history["loss"]],
                        val_scores=val_scores, train_windows=len(z_train), val_windows=len(z_held),
                        keras_model=model)
