"""Dashboard loaders: plain functions from a `Store` (or the OTA registry) to DataFrames and small dicts.

One module per page in dashboards/views/ (fleet, device, alarms, system, models) plus `common`
(which database, number formatting), `health` (stage, remaining life and trend in plain words) and `commissioning` (a node's commissioning in words, its classes,
the fleet's commissioning counts, the devices a commission command goes to: Fleet and Device pages) and `readings`
(velocity against the ISO 20816 zones, the "why" of anomalous windows, the debug capture's spectrum), `timerange`
(the shared time range: presets, from/to, zoom) and `timeseries` (results over a range, bucketed in the database
when there are many; the compare view). Nothing here imports Streamlit, so every loader is tested
against a real store without a browser; dashboards/ui.py wraps them in short-TTL caches. Times
in the store are UTC milliseconds; frames carry them both as ms and as timezone-aware datetimes.

The submodules are imported here so callers can write `loaders.fleet.fleet_frame(...)`, which
says which page a loader serves.
"""

from dashboards.loaders import (
                                alarms,
                                commissioning,
                                common,
                                device,
                                fleet,
                                health,
                                models,
                                readings,
                                system,
                                timerange,
                                timeseries,
)

__all__ = ["alarms", "commissioning", "common", "device", "fleet", "health", "models", "readings", "system", "timerange",
           "timeseries"]
