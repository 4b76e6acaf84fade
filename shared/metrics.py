"""Prometheus metrics, declared once. Each process has its own registry, served on ``/metrics``.

Names follow Prometheus conventions (``_total`` counters, base units); labels never carry customer ids.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # Records taken from a topic by a batch handler that completed (committed).
        self.consumed = Counter("touchpoint_consumed_records_total", "Records consumed and committed", ["topic"], registry=r)
        # Records Kafka acknowledged, dead letters included.
        self.produced = Counter("touchpoint_produced_records_total", "Records produced and acknowledged", ["topic"], registry=r)
        # Records sent to a dead-letter topic, by the topic they came from and the reason code.
        self.dead_lettered = Counter("touchpoint_dead_lettered_records_total", "Records sent to a dead-letter topic",
                                     ["topic", "reason"], registry=r)
        self.batch_seconds = Histogram("touchpoint_batch_processing_seconds", "Time to process and commit one batch",
                                       ["topic"], buckets=SECONDS_BUCKETS, registry=r)
        self.batch_size = Histogram("touchpoint_batch_size_records", "Records per consumed batch", ["topic"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_failures = Counter("touchpoint_batch_failures_total", "Batches handed back to Kafka after failing",
                                      ["topic", "error"], registry=r)
        # Highwater minus the next offset to consume, per partition seen in the last batch.
        self.lag = Gauge("touchpoint_consumer_lag_records", "Consumer lag", ["topic", "partition"], registry=r)
        self.http_requests = Counter("touchpoint_http_requests_total", "HTTP requests answered",
                                     ["route", "method", "status"], registry=r)
        self.http_seconds = Histogram("touchpoint_http_request_duration_seconds", "HTTP request latency", ["route"],
                                      buckets=SECONDS_BUCKETS, registry=r)
        self.gc_pause = Counter("touchpoint_gc_pause_seconds", "Time spent in garbage collections", ["generation"],
                                registry=r)

    def record_gc_pause(self, generation: int, seconds: float) -> None:
        self.gc_pause.labels(str(generation)).inc(seconds)

    def counter(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
        """A business counter of one service (e.g. ``touchpoint_customers_merged_total``)."""
        return Counter(name, documentation, list(labels), registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A business gauge of one service (e.g. ``touchpoint_feedback_score``)."""
        return Gauge(name, documentation, list(labels), registry=self.registry)

    def watch_pool(self, sizes: Callable[[], tuple[int, int, int]]) -> None:
        """Expose ``touchpoint_db_pool_connections{state}`` from (size, idle, max) read at scrape time."""
        self.registry.register(_PoolCollector(sizes))


class _PoolCollector:
    def __init__(self, sizes: Callable[[], tuple[int, int, int]]) -> None:
        self._sizes = sizes

    def collect(self):
        size, idle, maximum = self._sizes()
        family = GaugeMetricFamily("touchpoint_db_pool_connections", "Database pool connections", labels=["state"])
        family.add_metric(["in_use"], size - idle)
        family.add_metric(["idle"], idle)
        family.add_metric(["max"], maximum)
        yield family
