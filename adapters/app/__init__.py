"""The process: settings, the composition root (wiring), the HTTP server and its workers,
metrics, logs and the knowledge service. The only place that reads settings."""
