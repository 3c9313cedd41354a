"""The "why" of an anomalous window: top contributors by Hz and a fault-type hint by order."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.errors import FeatureError
from edgefleet.runtime.diagnosis import BearingGeometry, contributors, fault_hint, input_ranges
from edgefleet.runtime.features import FeatureParams, low_freq

V2 = FeatureParams.spaced(32, 200.0, 5000.0, spacing="log", lf=low_freq())
NB = V2.n_bands
SKF_6205 = BearingGeometry(9, 7.94, 39.04)


def errors_at(*freqs_hz: float, weight: float = 1.0, base: float = 0.01) -> np.ndarray:
    """Error vector with `weight` on the LF band holding each frequency, a little everywhere."""
    e = np.full(V2.n_features, base)
    ranges = input_ranges(V2)
    for f in freqs_hz:
        i = next(i for i in range(NB, NB + V2.lf.n_bands) if ranges[i][0] <= f < ranges[i][1])
        e[i] += weight
    return e


def test_error_at_1x_reads_as_unbalance_and_names_the_band():
    e = errors_at(25.0)
    assert fault_hint(e, V2, 25.0) == "unbalance"
    top = contributors(e, V2)
    assert len(top) == 3 and top[0].lo_hz <= 25.0 < top[0].hi_hz
    assert top[0].share > 0.5 and sum(c.share for c in top) <= 1.0
    msg = top[0].to_message()
    assert set(msg) == {"lo", "hi", "share"} and msg["lo"] <= 25.0 < msg["hi"]


def test_error_mostly_at_2x_reads_as_misalignment():
    e = errors_at(25.0, weight=0.3) + errors_at(50.0, base=0.0)
    assert fault_hint(e, V2, 25.0) == "misalignment"


def test_error_over_subharmonics_and_many_harmonics_reads_as_looseness():
    e = errors_at(12.5, 37.5, 75.0, 100.0, 125.0, weight=0.5)
    assert fault_hint(e, V2, 25.0) == "looseness"


def test_error_in_bearing_bands_and_kurtosis_reads_as_bearing():
    e = np.full(V2.n_features, 0.01)
    e[20:28] = 0.5
    e[V2.feature_names().index("kurtosis")] = 1.0
    assert fault_hint(e, V2, 25.0) == "bearing"
    top = contributors(e, V2)
    assert top[0].name == "kurtosis" and top[0].to_message() == {"name": "kurtosis", "share": round(top[0].share, 3)}


def test_defect_orders_name_the_race_when_the_geometry_is_known():
    speed = 10.0  # a slow machine: BPFO 35.8 Hz and its harmonics fall in the LF bands
    bpfo = SKF_6205.orders()["bpfo"] * speed
    e = errors_at(bpfo, 2 * bpfo, 3 * bpfo, weight=0.6)
    assert fault_hint(e, V2, speed, SKF_6205) == "bearing_outer_race"
    assert fault_hint(e, V2, speed) != "bearing_outer_race"  # without the geometry it cannot say


def test_no_speed_or_a_v1_front_end_gives_unknown():
    e = errors_at(25.0)
    assert fault_hint(e, V2, None) == "unknown" and fault_hint(e, V2, float("nan")) == "unknown"
    v1 = FeatureParams.spaced(32, 200.0, 5000.0)
    assert fault_hint(np.ones(32), v1, 25.0) == "unknown"
    assert contributors(np.zeros(V2.n_features), V2) == []


def test_orders_of_the_cwru_bearing():
    o = SKF_6205.orders()
    assert o["bpfo"] == pytest.approx(3.585, abs=0.01) and o["bpfi"] == pytest.approx(5.415, abs=0.01)
    assert o["bsf"] == pytest.approx(2.357, abs=0.01) and o["ftf"] == pytest.approx(0.398, abs=0.01)


@pytest.mark.parametrize("args, match", [
    ((2, 7.94, 39.04), "3-60 rolling elements"),
    ((9, 39.04, 7.94), "were they swapped"),
    ((9, -1.0, 39.04), "finite and > 0"),
    ((9, 7.94, float("nan")), "finite and > 0"),
    ((9, 7.94, 39.04, 75.0), "contact angle"),
])
def test_a_bearing_geometry_that_makes_no_sense_is_refused(args, match):
    with pytest.raises(FeatureError, match=match):
        BearingGeometry(*args)
