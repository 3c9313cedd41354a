"""The engineer's model toolchain: import `.tflite`, train, evaluate, write model cards, measure
the TFLM arena, and the LiteRT reference. Builds on `edgefleet.runtime`; the fleet never imports it."""
