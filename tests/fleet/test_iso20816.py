"""ISO 20816 zones: class boundaries, the zone of a reading, class names, which class a device takes."""

from __future__ import annotations

import math

import pytest

from edgefleet.service import iso20816
from edgefleet.service.iso20816 import (
    MachineClassError,
    bands,
    class_for,
    machine_class,
    zone,
)


@pytest.mark.parametrize("cls, limits", [("I", (0.71, 1.8, 4.5)), ("II", (1.12, 2.8, 7.1)),
                                         ("III", (1.8, 4.5, 11.2)), ("IV", (2.8, 7.1, 18.0))])
def test_zone_boundaries_of_every_class(cls, limits):
    a, b, c = limits
    assert [zone(x, cls) for x in (0.0, a * 0.99, a, b * 0.99, b, c * 0.99, c, 100.0, 1000.0)] == \
        ["A", "A", "B", "B", "C", "C", "D", "D", "D"]  # a boundary value belongs to the zone above it
    assert [z for z, _, _ in bands(cls)] == ["A", "B", "C", "D"] and bands(cls)[2][2] == c


def test_default_class_is_ii():
    assert iso20816.DEFAULT_CLASS == "II" and zone(2.0) == "B" and zone(3.0) == "C"
    assert class_for("pump-1", "north", {}, {}) == ("II", "default")
    assert class_for("pump-1", "north", {}, {"north": "IV"}) == ("IV", "site")
    assert class_for("pump-1", "north", {"pump-1": "I"}, {"north": "IV"}) == ("I", "device")
    assert class_for("pump-1", None, {}, {"north": "IV"}) == ("II", "default")


@pytest.mark.parametrize("name, want", [("II", "II"), ("ii", "II"), (" class iii ", "III"), ("Class IV", "IV"),
                                        (1, "I"), ("4", "IV")])
def test_class_names(name, want):
    assert machine_class(name) == want


@pytest.mark.parametrize("name", ["V", "", "class", "IIII", "medium", 5, "x" * 500])
def test_a_bad_class_name_is_one_clear_error(name):
    with pytest.raises(MachineClassError) as info:
        machine_class(name)
    msg = str(info.value)
    assert "one of I, II, III, IV" in msg and "\n" not in msg and len(msg) < 200


@pytest.mark.parametrize("v", [-1.0, math.nan, math.inf])
def test_a_reading_that_is_not_a_velocity_is_refused(v):
    with pytest.raises(MachineClassError, match="finite number of mm/s"):
        zone(v)
