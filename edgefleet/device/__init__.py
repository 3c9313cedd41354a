"""The device side that runs beside a node rather than in the fleet service: the OTA client of a
simulated node, and the serial bridge that carries a real node's MQTT traffic over COBS frames."""
