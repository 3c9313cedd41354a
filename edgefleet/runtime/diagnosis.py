"""Why a window is anomalous: the inputs that rose most above the machine's normal, named by
frequency range or running-speed order, and a fault-type hint (docs/protocol.md, "why").

The measure is each input's one-sided excess over normal, max(z, 0)^2 of the standardized
input (the terms of the health indicator), not the autoencoder's per-input reconstruction
error: the decoder smears a departure over inputs it correlates with, so a strong 1x line
(unbalance) showed up in the reconstruction error as kurtosis and crest (53 % of it) while its
excess sat 79 % in the band holding 1x (measured on the simulator, fleet-v2). Naming the inputs
needs only the front end's band edges; the hint needs the running speed and, for bearing
defects, the bearing's geometry from the node's config. Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgefleet.errors import FeatureError
from edgefleet.runtime.features import FeatureParams

TOP = 3  # contributors a result carries
HINTS = ("unbalance", "misalignment", "looseness", "bearing_outer_race", "bearing_inner_race", "bearing_ball",
         "bearing", "unknown")


@dataclass(frozen=True)
class BearingGeometry:
    """A rolling-element bearing, rotating inner race: what its defect frequencies follow from."""

    n_balls: int
    ball_d_mm: float
    pitch_d_mm: float
    contact_deg: float = 0.0

    def __post_init__(self) -> None:
        if not 3 <= self.n_balls <= 60:
            raise FeatureError(f"a bearing has 3-60 rolling elements, got {self.n_balls}")
        if not (self.ball_d_mm > 0 and self.pitch_d_mm > 0 and math.isfinite(self.ball_d_mm + self.pitch_d_mm)):
            raise FeatureError("bearing ball and pitch diameters must be finite and > 0 mm")
        if self.ball_d_mm >= 0.5 * self.pitch_d_mm:
            raise FeatureError(f"a ball of {self.ball_d_mm:g} mm cannot run on a {self.pitch_d_mm:g} mm pitch "
                               "circle (ball diameter must be below half the pitch diameter); were they swapped?")
        if not 0 <= self.contact_deg < 60:
            raise FeatureError(f"contact angle must be 0-60 degrees, got {self.contact_deg:g}")

    def orders(self) -> dict[str, float]:
        """Defect frequencies as multiples of the shaft speed: BPFO, BPFI, BSF, FTF."""
        c = self.ball_d_mm / self.pitch_d_mm * math.cos(math.radians(self.contact_deg))
        return {"bpfo": self.n_balls / 2 * (1 - c), "bpfi": self.n_balls / 2 * (1 + c),
                "bsf": self.pitch_d_mm / (2 * self.ball_d_mm) * (1 - c * c), "ftf": 0.5 * (1 - c)}


@dataclass(frozen=True)
class Contributor:
    index: int  # model input
    share: float  # of the window's squared reconstruction error
    name: str  # "98-122 Hz" or "kurtosis"
    lo_hz: float | None = None
    hi_hz: float | None = None

    def to_message(self) -> dict:
        """The protocol's `why` item (docs/protocol.md)."""
        share = round(self.share, 3)
        if self.lo_hz is None:
            return {"name": self.name, "share": share}
        return {"lo": round(self.lo_hz, 1), "hi": round(self.hi_hz, 1), "share": share}


def input_ranges(params: FeatureParams) -> list[tuple[float | None, float | None, str]]:
    """(lo Hz, hi Hz, name) of every model input; extras have no range."""
    e = params.edges_hz
    out: list[tuple[float | None, float | None, str]] = [
        (e[i], e[i + 1], f"{e[i]:.0f}-{e[i + 1]:.0f} Hz") for i in range(params.n_bands)]
    if params.lf is not None:
        le = params.lf.edges_hz
        out += [(le[i], le[i + 1], f"{le[i]:.1f}-{le[i + 1]:.1f} Hz") for i in range(params.lf.n_bands)]
        out += [(None, None, name) for name in params.lf.extra_names]
    return out


def excess(z: np.ndarray) -> np.ndarray:
    """Each input's one-sided excess over normal, max(z, 0)^2: what rose, not what fell."""
    e = np.maximum(np.asarray(z, np.float64), 0.0)
    return np.where(np.isfinite(e), e * e, 0.0)


def contributors(excess: np.ndarray, params: FeatureParams, top: int = TOP) -> list[Contributor]:
    """The `top` inputs with the largest share of `excess` (ties: lower index first)."""
    err = np.asarray(excess, np.float64)
    total = float(err.sum())
    if total <= 0 or not math.isfinite(total):
        return []
    ranges = input_ranges(params)
    order = np.argsort(-err, kind="stable")[:top]
    return [Contributor(int(i), float(err[i] / total), ranges[i][2], ranges[i][0], ranges[i][1]) for i in order]


def _near(lo: float, hi: float, f: float, tol: float) -> bool:
    return lo - tol <= f < hi + tol


def fault_hint(excess: np.ndarray, params: FeatureParams, speed_hz: float | None,
               bearing: BearingGeometry | None = None) -> str:
    """Where the excess over normal concentrates, as a fault type (one of HINTS).

    Low-frequency excess at 1x reads as unbalance, at 2x (above 1x) as misalignment, spread over
    sub-harmonics and higher harmonics (more than 1x or 2x alone) as looseness; high-frequency
    bands, kurtosis and crest as a bearing, named by the defect order whose harmonics hold the
    most when the geometry is known. A hint for the engineer, not a verdict: a bent shaft shows
    as 1x/2x.
    """
    err = np.asarray(excess, np.float64)
    total = float(err.sum())
    if params.lf is None or total <= 0 or speed_hz is None or not math.isfinite(speed_hz) or speed_hz <= 0:
        return "unknown"
    ranges = input_ranges(params)
    nb, nl = params.n_bands, params.lf.n_bands
    lf = range(nb, nb + nl)
    extras = {ranges[i][2]: err[i] for i in range(nb + nl, len(ranges))}
    impact = float(err[:nb].sum()) + extras.get("kurtosis", 0.0) + extras.get("crest", 0.0)
    tol = 0.03 * speed_hz

    def at_order(order: float) -> float:
        f = order * speed_hz
        return float(sum(err[i] for i in lf if _near(ranges[i][0], ranges[i][1], f, tol)))

    h1, h2 = at_order(1.0), at_order(2.0)
    others = [at_order(k) for k in (0.5, 1.5, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)]
    lf_total = float(err[nb:nb + nl].sum())
    if bearing is not None:
        by_defect = {name: sum(at_order(k * o) for k in (1, 2, 3)) for name, o in bearing.orders().items()
                     if name != "ftf"}
        best = max(by_defect, key=by_defect.get)
        if by_defect[best] > 0.25 * total and by_defect[best] > h1 + h2:
            return {"bpfo": "bearing_outer_race", "bpfi": "bearing_inner_race", "bsf": "bearing_ball"}[best]
    if impact >= 0.5 * total:
        return "bearing"
    if lf_total < 0.3 * total:
        return "unknown"
    # looseness: sub-harmonics and a comb of higher harmonics, together above 1x and 2x alone
    if sum(1 for h in others if h > 0.05 * total) >= 2 and sum(others) > max(h1, h2):
        return "looseness"
    if h2 > h1 and h2 > 0.2 * total:
        return "misalignment"
    if h1 > 0.2 * total:
        return "unbalance"
    return "unknown"
