"""Model artifact v1 (`.efm`): writer and validating reader (docs/artifact-format.md).

The same bytes are read in place by the C firmware, so every check the C reader
makes is made here too, and `from_bytes` refuses anything inconsistent before
any array is touched.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgefleet.errors import ArtifactError
from edgefleet.runtime.features import FeatureParams, LowFreqParams

MAGIC = b"EFAM"
FORMAT_VERSION = 1
HEADER = struct.Struct("<4sHHIIIIHHHHfifiIIIHH")  # 64 bytes
LAYER = struct.Struct("<HHBBHiiiiIIIII")  # 44 bytes
SCORING = struct.Struct("<HHf")  # 8 bytes
FEATURES_HEAD = struct.Struct("<HHff")  # 12 bytes, then float arrays
FEATURE_KIND_LOG_BAND_POWER = 1
FEATURE_KIND_V2 = 2  # + low-frequency stream, velocity, kurtosis, crest (docs/features.md, v2)
LOW_FREQ = struct.Struct("<HHHHfffffff")  # 36 bytes after the HF edges, then LF edges
RULE_MSE = 1
ACTIVATIONS = {0: "none", 1: "relu", 2: "relu6", 3: "relu_n1_to_1"}
MAX_TOTAL_SIZE = 16 * 1024 * 1024
SLOT_BYTES = 64 * 1024  # what one model slot of a node holds (firmware: docs/firmware.md)

REQUANT_FP32 = 0  # LiteRT default resolver (XNNPACK)
REQUANT_INT = 1  # TFLite reference kernels, single rounding
REQUANT_MODES = {"fp32": REQUANT_FP32, "int": REQUANT_INT}

assert HEADER.size == 64 and LAYER.size == 44


def pack_version(text: str) -> int:
    """'1.2.3' -> 0x010203, the header's min_firmware encoding."""
    try:
        major, minor, patch = (int(p) for p in text.split("."))
    except ValueError as exc:
        raise ArtifactError(f"version {text!r} is not MAJOR.MINOR.PATCH") from exc
    if not all(0 <= p <= 255 for p in (minor, patch)) or not 0 <= major <= 65535:
        raise ArtifactError(f"version {text!r} out of range")
    return major << 16 | minor << 8 | patch


def unpack_version(value: int) -> str:
    return f"{value >> 16}.{(value >> 8) & 0xFF}.{value & 0xFF}"


@dataclass
class Layer:
    """One int8 FULLY_CONNECTED layer with its precomputed requantization."""

    weights: np.ndarray  # int8 [n_out, n_in]
    bias: np.ndarray | None  # int32 [n_out]
    multiplier: np.ndarray  # int32 [n_out] or [1]
    shift: np.ndarray  # int32 [n_out] or [1]
    scale: np.ndarray  # float32 [n_out] or [1], the fp32-mode requantization scale
    input_zero_point: int
    output_zero_point: int
    act_min: int = -128
    act_max: int = 127
    activation: int = 0

    @property
    def n_in(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weights.shape[0])

    @property
    def per_channel(self) -> bool:
        return self.multiplier.size > 1


@dataclass
class FeatureSection:
    params: FeatureParams
    mean: np.ndarray  # float32 [n_features]
    inv_std: np.ndarray  # float32 [n_features]


@dataclass
class Scoring:
    threshold: float
    rule: int = RULE_MSE


@dataclass
class Artifact:
    layers: list[Layer]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    model_version: int = 1
    min_firmware: str = "1.0.0"
    requant_mode: int = REQUANT_FP32
    features: FeatureSection | None = None
    scoring: Scoring | None = None
    _raw: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def n_inputs(self) -> int:
        return self.layers[0].n_in

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_out

    @property
    def arena_bytes(self) -> int:
        """Activation RAM of the ping-pong arena: input and output of the widest layer."""
        return max(layer.n_in + layer.n_out for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.n_in * layer.n_out for layer in self.layers)

    @property
    def parameters(self) -> int:
        return sum(layer.weights.size + (layer.n_out if layer.bias is not None else 0)
                   for layer in self.layers)

    def to_bytes(self) -> bytes:
        return _serialize(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Artifact:
        return _parse(bytes(data))


def load_artifact(path: str | Path) -> Artifact:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {p}: {exc.strerror}") from exc
    try:
        return Artifact.from_bytes(data)
    except ArtifactError as exc:
        raise ArtifactError(f"{p}: {exc}") from exc


# ---------------------------------------------------------------- writer

def _align(n: int) -> int:
    return (n + 3) & ~3


def _serialize(a: Artifact) -> bytes:
    _check_chain(a.layers, a.input_zero_point, a.output_zero_point)
    body = bytearray(HEADER.size)  # header filled in last

    def put(blob: bytes) -> int:
        off = len(body)
        body.extend(blob)
        body.extend(b"\0" * (_align(len(body)) - len(body)))
        return off

    features_off = 0
    if a.features is not None:
        fs = a.features
        nb, nf, lf = fs.params.n_bands, fs.params.n_features, fs.params.lf
        if nf != a.n_inputs:
            raise ArtifactError(f"{nf} features but the model has {a.n_inputs} inputs")
        kind = FEATURE_KIND_LOG_BAND_POWER if lf is None else FEATURE_KIND_V2
        blob = FEATURES_HEAD.pack(kind, nb, fs.params.window_s, fs.params.log_floor)
        blob += np.asarray(fs.params.edges_hz, "<f4").tobytes()
        if lf is not None:
            blob += LOW_FREQ.pack(lf.length, lf.settle, lf.n_bands, lf.extras, lf.rate_hz, lf.cut_hz,
                                  lf.vel_lo_hz, lf.vel_split_hz, lf.vel_hi_hz, lf.speed_min_hz, lf.speed_max_hz)
            blob += np.asarray(lf.edges_hz, "<f4").tobytes()
        blob += np.asarray(fs.mean, "<f4").reshape(nf).tobytes()
        blob += np.asarray(fs.inv_std, "<f4").reshape(nf).tobytes()
        features_off = put(blob)
    layers_off = put(b"\0" * (LAYER.size * len(a.layers)))
    scoring_off = 0
    if a.scoring is not None:
        scoring_off = put(SCORING.pack(a.scoring.rule, 0, a.scoring.threshold))
    records = []
    for layer in a.layers:
        w_off = put(np.ascontiguousarray(layer.weights, "<i1").tobytes())
        b_off = put(np.asarray(layer.bias, "<i4").tobytes()) if layer.bias is not None else 0
        m_off = put(np.asarray(layer.multiplier, "<i4").tobytes())
        s_off = put(np.asarray(layer.shift, "<i4").tobytes())
        sc_off = put(np.asarray(layer.scale, "<f4").tobytes())
        per_channel = 1 if layer.multiplier.size == layer.n_out and layer.n_out > 1 else 0
        if (layer.multiplier.size not in (1, layer.n_out) or layer.shift.size != layer.multiplier.size
                or layer.scale.size != layer.multiplier.size):
            raise ArtifactError("multiplier/shift/scale count must be 1 or n_out")
        records.append(LAYER.pack(layer.n_in, layer.n_out, layer.activation, per_channel, 0,
                                  layer.input_zero_point, layer.output_zero_point,
                                  layer.act_min, layer.act_max, w_off, b_off, m_off, s_off, sc_off))
    body[layers_off:layers_off + LAYER.size * len(records)] = b"".join(records)
    total = len(body)
    if a.arena_bytes > 0xFFFF:
        raise ArtifactError(f"activation arena {a.arena_bytes} B does not fit the format's u16")
    HEADER.pack_into(body, 0, MAGIC, FORMAT_VERSION, HEADER.size, total, 0, a.model_version,
                     pack_version(a.min_firmware), a.n_inputs, a.n_outputs, len(a.layers),
                     a.arena_bytes, a.input_scale, a.input_zero_point, a.output_scale,
                     a.output_zero_point, features_off, layers_off, scoring_off, a.requant_mode, 0)
    struct.pack_into("<I", body, 12, zlib.crc32(bytes(body[16:])))
    return bytes(body)


def _check_chain(layers: list[Layer], in_zp: int, out_zp: int) -> None:
    if not layers:
        raise ArtifactError("a model needs at least one layer")
    if layers[0].input_zero_point != in_zp or layers[-1].output_zero_point != out_zp:
        raise ArtifactError("first/last layer zero points differ from the model's input/output")
    for i, (a, b) in enumerate(zip(layers, layers[1:])):
        if a.n_out != b.n_in or a.output_zero_point != b.input_zero_point:
            raise ArtifactError(f"layer {i + 1} does not chain onto layer {i}")


# ---------------------------------------------------------------- reader

def _parse(data: bytes) -> Artifact:
    if len(data) < HEADER.size:
        raise ArtifactError(f"truncated: {len(data)} bytes, shorter than the 64-byte header")
    (magic, version, header_size, total, crc, model_version, min_fw, n_in, n_out, n_layers,
     arena, in_scale, in_zp, out_scale, out_zp, feat_off, layers_off, scoring_off,
     requant_mode, _reserved) = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ArtifactError(f"not an edgefleet model artifact (magic {magic!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"artifact format version {version} is not supported (this reader supports "
            f"{FORMAT_VERSION}); re-import the model with this edgefleet version")
    if header_size != HEADER.size:
        raise ArtifactError(f"header size {header_size}, expected {HEADER.size}")
    if total != len(data):
        raise ArtifactError(
            f"truncated or padded: header says {total} bytes, file has {len(data)}")
    if total > MAX_TOTAL_SIZE:
        raise ArtifactError(f"artifact of {total} bytes exceeds the {MAX_TOTAL_SIZE} limit")
    if zlib.crc32(data[16:]) != crc:
        raise ArtifactError("CRC mismatch: the artifact is corrupted")
    if _reserved != 0:
        raise ArtifactError("reserved header field (offset 62) is not zero")
    if requant_mode not in REQUANT_MODES.values():
        raise ArtifactError(f"unknown requantization mode {requant_mode}")
    if n_layers < 1 or n_in < 1 or n_out < 1:
        raise ArtifactError("artifact declares no layers, inputs or outputs")
    if not (np.isfinite(in_scale) and in_scale > 0 and np.isfinite(out_scale) and out_scale > 0):
        raise ArtifactError("input/output scale must be finite and > 0")

    def span(off: int, nbytes: int, what: str) -> None:
        if off % 4 or off < HEADER.size or off + nbytes > total:
            raise ArtifactError(f"{what} at offset {off} (+{nbytes} B) lies outside the artifact "
                                "or is misaligned")

    span(layers_off, LAYER.size * n_layers, "layer table")
    layers: list[Layer] = []
    for i in range(n_layers):
        (li, lo, act, per_ch, _r, lizp, lozp, amin, amax, w_off, b_off, m_off,
         s_off, sc_off) = LAYER.unpack_from(data, layers_off + i * LAYER.size)
        if _r != 0 or per_ch > 1 or act not in ACTIVATIONS:
            raise ArtifactError(f"layer {i} has a reserved field set or an unknown activation/flag")
        if li < 1 or lo < 1:
            raise ArtifactError(f"layer {i} has an empty shape {lo}x{li}")
        if not (-128 <= lizp <= 127 and -128 <= lozp <= 127 and -128 <= amin <= amax <= 127):
            raise ArtifactError(f"layer {i} has out-of-range zero points or activation bounds")
        k = lo if per_ch else 1
        span(w_off, li * lo, f"layer {i} weights")
        if b_off:
            span(b_off, 4 * lo, f"layer {i} bias")
        span(m_off, 4 * k, f"layer {i} multipliers")
        span(s_off, 4 * k, f"layer {i} shifts")
        span(sc_off, 4 * k, f"layer {i} scales")
        scale = np.frombuffer(data, "<f4", k, sc_off)
        if not (np.isfinite(scale).all() and (scale > 0).all() and (scale < 256).all()):
            raise ArtifactError(f"layer {i} has an invalid fp32 requantization scale")
        shift = np.frombuffer(data, "<i4", k, s_off)
        mult = np.frombuffer(data, "<i4", k, m_off)
        if (shift < -31).any() or (shift > 30).any() or (mult < 0).any():
            raise ArtifactError(f"layer {i} has an invalid requantization multiplier or shift")
        weights = np.frombuffer(data, np.int8, li * lo, w_off).reshape(lo, li)
        bias = np.frombuffer(data, "<i4", lo, b_off) if b_off else None
        acc_bound = 255 * int(np.abs(weights.astype(np.int64)).sum(axis=1).max())
        if bias is not None:
            acc_bound += int(np.abs(bias.astype(np.int64)).max())
        if acc_bound >= 1 << 31:
            raise ArtifactError(f"layer {i}: the int32 accumulator could overflow")
        layers.append(Layer(
            weights=weights, bias=bias, multiplier=mult, shift=shift, scale=scale, input_zero_point=lizp, output_zero_point=lozp,
            act_min=amin, act_max=amax, activation=act))
    if layers[0].n_in != n_in or layers[-1].n_out != n_out:
        raise ArtifactError("layer shapes disagree with the header's inputs/outputs")
    _check_chain(layers, in_zp, out_zp)
    if arena != max(layer.n_in + layer.n_out for layer in layers):
        raise ArtifactError("header arena size disagrees with the layer shapes")

    features = None
    if feat_off:
        span(feat_off, FEATURES_HEAD.size, "features section")
        kind, nb, window_s, log_floor = FEATURES_HEAD.unpack_from(data, feat_off)
        if kind not in (FEATURE_KIND_LOG_BAND_POWER, FEATURE_KIND_V2):
            raise ArtifactError(f"unknown feature kind {kind} (this edgefleet reads 1 and 2)")
        span(feat_off, FEATURES_HEAD.size + 4 * (nb + 1), "features section")
        base = feat_off + FEATURES_HEAD.size
        edges = np.frombuffer(data, "<f4", nb + 1, base)
        base += 4 * (nb + 1)
        lf = None
        try:
            if kind == FEATURE_KIND_V2:
                span(base, LOW_FREQ.size, "low-frequency features section")
                length, settle, n_lf, extras, *floats = LOW_FREQ.unpack_from(data, base)
                if not all(np.isfinite(floats)):
                    raise ArtifactError("low-frequency parameters hold NaN or infinity")
                base += LOW_FREQ.size
                span(base, 4 * (n_lf + 1), "low-frequency band edges")
                lf_edges = np.frombuffer(data, "<f4", n_lf + 1, base)
                base += 4 * (n_lf + 1)
                rate, cut, v_lo, v_split, v_hi, s_min, s_max = (float(v) for v in floats)
                lf = LowFreqParams(edges_hz=tuple(float(e) for e in lf_edges), rate_hz=rate, length=length,
                                   settle=settle, cut_hz=cut, vel_lo_hz=v_lo, vel_split_hz=v_split,
                                   vel_hi_hz=v_hi, speed_min_hz=s_min, speed_max_hz=s_max, extras=extras)
            params = FeatureParams(window_s=window_s, edges_hz=tuple(float(e) for e in edges),
                                   log_floor=log_floor, lf=lf)
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(f"invalid feature parameters: {exc}") from exc
        nf = params.n_features
        if nf != n_in:
            raise ArtifactError(f"{nf} features but {n_in} model inputs")
        span(base, 8 * nf, "feature standardization")
        mean = np.frombuffer(data, "<f4", nf, base)
        inv_std = np.frombuffer(data, "<f4", nf, base + 4 * nf)
        if not (np.isfinite(mean).all() and np.isfinite(inv_std).all()):
            raise ArtifactError("feature standardization holds NaN or infinity")
        features = FeatureSection(params=params, mean=mean, inv_std=inv_std)
    scoring = None
    if scoring_off:
        span(scoring_off, SCORING.size, "scoring section")
        rule, _r, threshold = SCORING.unpack_from(data, scoring_off)
        if _r != 0:
            raise ArtifactError("reserved scoring field is not zero")
        if rule != RULE_MSE:
            raise ArtifactError(f"unknown scoring rule {rule}")
        if not np.isfinite(threshold):
            raise ArtifactError("threshold is not finite")
        scoring = Scoring(threshold=threshold, rule=rule)
    return Artifact(layers=layers, input_scale=in_scale, input_zero_point=in_zp,
                    output_scale=out_scale, output_zero_point=out_zp,
                    model_version=model_version, min_firmware=unpack_version(min_fw),
                    requant_mode=requant_mode, features=features, scoring=scoring, _raw=data)
