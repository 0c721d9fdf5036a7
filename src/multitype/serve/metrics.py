"""Prometheus metrics of one app, in a registry of its own (two apps in one process never collide).

* ``multitype_requests_total{route,method,status}`` and
  ``multitype_request_duration_seconds{route,method,status}``: every request; ``route``
  is the route's path (``/predict``), ``other`` for paths the app does not serve;
* ``multitype_batch_size``: texts per model call (micro-batching shows here:
  fewer calls than requests, sizes above 1);
* ``multitype_batch_duration_seconds``: seconds per model call;
* ``multitype_queue_depth``: texts waiting for the model;
* ``multitype_model_load_seconds`` and ``multitype_model_info{name,version,kind}``.

With several worker processes (``--workers N``), ``multitype serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds up every worker's values
(prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The app's metrics; :meth:`render` gives the ``/metrics`` body and content type."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("multitype_requests", "HTTP requests answered.", ["route", "method", "status"],
                                registry=r)
        self.latency = Histogram("multitype_request_duration_seconds", "Seconds from request to response.",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("multitype_batch_size", "Texts per model call.", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.batch_seconds = Histogram("multitype_batch_duration_seconds", "Seconds per model call.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("multitype_queue_depth", "Texts waiting for the model.", registry=r,
                                 multiprocess_mode="livesum")
        self.model_load = Gauge("multitype_model_load_seconds", "Seconds the model took to load.", registry=r,
                                multiprocess_mode="max")
        self.model_info = Gauge("multitype_model_info", "The model served (value 1).", ["name", "version", "kind"],
                                registry=r, multiprocess_mode="max")

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method, str(status)).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text: this app's registry, or every worker's under ``PROMETHEUS_MULTIPROC_DIR``."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
