"""The fleet service: settings, broker, device credentials, ingest, alarms, stores and the OTA
registry, campaigns and manager. Builds on `edgefleet.runtime` and `edgefleet.protocol`."""
