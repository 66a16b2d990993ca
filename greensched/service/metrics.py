"""Prometheus metrics of one service (its own registry, so several apps can live in a process)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import prometheus_client

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.service.core import GreenSchedService

__all__ = ["Metrics"]

_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                      5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

class Metrics:
    """Prometheus metrics of one service (own registry, so several apps can live in a process)."""

    def __init__(self, service: GreenSchedService) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        r = CollectorRegistry(auto_describe=True)
        self.registry = r
        self.requests = Counter("greensched_http_requests", "HTTP requests by endpoint, method "
                                "and status", ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("greensched_http_request_duration_seconds",
                                 "Time from request start to the last response byte",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS_S, registry=r)
        self.assigned = Counter("greensched_assigned_jobs", "Jobs placed, by DC", ["dc"],
                                registry=r)
        self.unplaced = Counter("greensched_unplaced_jobs", "Jobs no DC could take, by reason",
                                ["reason"], registry=r)
        self.replayed = Counter("greensched_replayed_jobs", "Re-sent jobs answered from memory "
                                "or the ledger", registry=r)
        self.ledger_conflicts = Counter("greensched_ledger_conflicts",
                                        "Batches re-assigned because another replica took the "
                                        "capacity", registry=r)
        self.auth_failures = Counter("greensched_auth_failures", "Failed authentications",
                                     registry=r)
        self.rate_limited = Counter("greensched_rate_limited_requests",
                                    "Requests refused with 429 after failed authentications",
                                    registry=r)
        self.batch_jobs = Histogram("greensched_prediction_batch_jobs",
                                    "Jobs per predictor call (micro-batch size)",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("greensched_prediction_batch_requests",
                                        "Requests coalesced into one predictor call",
                                        buckets=_BATCH_BUCKETS, registry=r)
        self.predict_s = Histogram("greensched_prediction_duration_seconds",
                                   "Time of one predictor call", buckets=_LATENCY_BUCKETS_S,
                                   registry=r)
        self.assign_s = Histogram("greensched_assignment_duration_seconds",
                                  "Time to assign one micro-batch (ledger included)",
                                  buckets=_LATENCY_BUCKETS_S, registry=r)
        for dc in service.scenario.dcs:
            self.assigned.labels(dc)
        r.register(_StateCollector(service))

    def render(self) -> tuple[bytes, str]:
        return (prometheus_client.generate_latest(self.registry),
                prometheus_client.CONTENT_TYPE_LATEST)


class _StateCollector:
    """Gauges read at scrape time: ledger use per DC, model version, uptime, queue."""

    def __init__(self, service: GreenSchedService) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        s = self.service
        ledger = s.ledger
        with ledger.lock:
            used = ledger.used_ticks.sum(axis=0)  # (dc, resource)
        cap = ledger.capacity_ticks.sum(axis=0)
        tpu = float(ledger.ticks_per_unit)
        g_used = GaugeMetricFamily("greensched_ledger_used_units",
                                   "Reserved resource units over all hours",
                                   labels=["dc", "resource"])
        g_cap = GaugeMetricFamily("greensched_ledger_capacity_units",
                                  "Capacity in resource units over all hours",
                                  labels=["dc", "resource"])
        g_util = GaugeMetricFamily("greensched_ledger_utilisation_ratio",
                                   "Reserved / capacity over all hours (0..1)",
                                   labels=["dc", "resource"])
        for i, dc in enumerate(ledger.dcs):
            for r, res in enumerate(ledger.resources):
                g_used.add_metric([dc, res], used[i, r] / tpu)
                g_cap.add_metric([dc, res], cap[i, r] / tpu)
                g_util.add_metric([dc, res], float(used[i, r] / cap[i, r]) if cap[i, r] else 0.0)
        yield g_used
        yield g_cap
        yield g_util
        version, kind = s.model_version()
        info = InfoMetricFamily("greensched_model", "The model version serving predictions")
        info.add_metric([], {"version": version, "kind": kind, "scenario": s.scenario.name,
                             "mode": s.mode})
        yield info
        st = s.model_status()
        reg = InfoMetricFamily("greensched_model_registry",
                               "Promoted and serving model versions, and the last load error")
        reg.add_metric([], {k: (v or "") for k, v in st.items()})
        yield reg
        bad = GaugeMetricFamily("greensched_model_load_failing",
                                "1 when the promoted version is not the one serving")
        bad.add_metric([], float(st["promoted_version"] != st["serving_version"]))
        yield bad
        swaps = GaugeMetricFamily("greensched_model_versions_served",
                                  "Distinct model versions served since start")
        swaps.add_metric([], float(len(s.versions_served)))
        yield swaps
        up = GaugeMetricFamily("greensched_uptime_seconds", "Seconds since the service started")
        up.add_metric([], time.monotonic() - s.started_monotonic)
        yield up
        q = GaugeMetricFamily("greensched_batcher_pending_jobs",
                              "Jobs waiting for the micro-batcher")
        q.add_metric([], float(max(0, s.batcher.pending_jobs)))
        yield q

