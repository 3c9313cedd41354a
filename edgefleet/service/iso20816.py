"""ISO 20816 (formerly ISO 10816-1) vibration severity zones: velocity RMS in mm/s (10-1,000 Hz) judged
against the zone boundaries of the machine's class. Pure: no I/O, no store.

Zones: A newly commissioned machines; B acceptable for unrestricted long-term operation; C not
acceptable for long-term operation (plan a repair); D severe enough to cause damage. Classes
(ISO 10816-1 Annex B, kept in ISO 20816-1 practice):

- I: small machines, e.g. motors up to 15 kW;
- II: medium machines (15-75 kW), or up to 300 kW on special foundations; the default;
- III: large machines on rigid, heavy foundations;
- IV: large machines on soft (flexible) foundations, e.g. turbo sets.

A device's class is set per device or per site (`Store.set_machine_class`); a device without its
own takes its site's, else DEFAULT_CLASS (`class_for`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from edgefleet.errors import EdgefleetError

CLASSES = ("I", "II", "III", "IV")
DEFAULT_CLASS = "II"
ZONES = ("A", "B", "C", "D")
# Upper velocity RMS (mm/s) of zones A, B and C per class: a reading at or above the third is zone D.
BOUNDARIES: dict[str, tuple[float, float, float]] = {
    "I": (0.71, 1.8, 4.5),
    "II": (1.12, 2.8, 7.1),
    "III": (1.8, 4.5, 11.2),
    "IV": (2.8, 7.1, 18.0),
}
CLASS_WORDS = {
    "I": "small machines (motors up to 15 kW)",
    "II": "medium machines (15-75 kW, or up to 300 kW on special foundations)",
    "III": "large machines on rigid foundations",
    "IV": "large machines on soft foundations",
}
ZONE_WORDS = {
    "A": "as new",
    "B": "acceptable for long-term operation",
    "C": "not for long-term operation: plan a repair",
    "D": "severe: damage likely",
}
ZONE_COLOURS = {"A": "#2ca02c", "B": "#a6d96a", "C": "#ff9f1c", "D": "#d62728"}
_ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV"}


class MachineClassError(EdgefleetError):
    """A machine class that ISO 20816 does not have, or a reading that is not a velocity."""


def machine_class(name: str | int) -> str:
    """The class named by `name` ('I'..'IV', case and spaces ignored, 'class II' and 1-4 accepted),
    or MachineClassError with the valid names."""
    text = str(name).strip().upper()
    if text.startswith("CLASS"):
        text = text[5:].strip()
    text = _ROMAN.get(text, text)
    if text not in CLASSES:
        raise MachineClassError(f"unknown ISO 20816 machine class {str(name)[:40]!r}: one of I, II, III, IV "
                                "(I small, II medium, III large on rigid, IV large on soft foundations)")
    return text


def zone(vrms: float, cls: str = DEFAULT_CLASS) -> str:
    """'A', 'B', 'C' or 'D' for a velocity RMS in mm/s; a boundary value belongs to the zone above it."""
    limits = BOUNDARIES[machine_class(cls)]
    v = float(vrms)
    if not (math.isfinite(v) and v >= 0):
        raise MachineClassError(f"velocity RMS must be a finite number of mm/s >= 0, got {vrms!r}")
    for name, upper in zip(ZONES, limits):
        if v < upper:
            return name
    return "D"


def bands(cls: str = DEFAULT_CLASS, top: float | None = None) -> list[tuple[str, float, float]]:
    """The zones of a class as (zone, lower, upper) in mm/s, for shading a chart; zone D runs to
    `top` (default: 1.5 x the C/D boundary)."""
    a, b, c = BOUNDARIES[machine_class(cls)]
    return [("A", 0.0, a), ("B", a, b), ("C", b, c), ("D", c, max(top or 0.0, 1.5 * c))]


def class_for(device: str, site: str | None, by_device: Mapping[str, str], by_site: Mapping[str, str]) -> tuple[str, str]:
    """(class, where it comes from: 'device', 'site' or 'default') of a device."""
    if device in by_device:
        return by_device[device], "device"
    if site is not None and site in by_site:
        return by_site[site], "site"
    return DEFAULT_CLASS, "default"
