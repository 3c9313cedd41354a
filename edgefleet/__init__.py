"""edgefleet: open predictive maintenance for machine fleets that run TinyML.

Pure math lives in `features`, `quant`, `engine`; file formats in `artifact` and
`manifest`; everything that touches the network or disk sits at the edges
(`ingest`, `store`, `cli`).
"""

__version__ = "0.1.0"
FIRMWARE_VERSION = "1.0.0"
