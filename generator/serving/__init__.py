"""Serving the studio to scripts: an HTTP API (JSON, Server-Sent Events) mounted beside the web UI,
and the queue its jobs wait in (:mod:`generator.serving.queue`), scoped to API keys."""
