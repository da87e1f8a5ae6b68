"""``/metrics``: Prometheus series of this process and of the database it shares.

Two sources:

- what this process saw, kept in its own registry: connector calls (by connector,
  operation and outcome, with latency histograms) and the answers to Slack and Teams
  (by platform and HTTP status class, with latency histograms: Slack wants an answer
  within 3 s). Each replica reports its own; Prometheus sums them.
- what the database holds, read at each scrape (``storage.health``): requests by state,
  decisions, grants active, open outbox rows by kind and state with how late the oldest
  runs, and the audit chain's head. Every replica reports the same values; aggregate them
  with ``max`` rather than ``sum``.

Series exist from the first scrape, zeros included, so that dashboards and alerts work
on an empty database and a rate() has a start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bot.clock import Clock
from engine.access_request import Status
from engine.effects import EFFECT_TYPES
from storage.health import OPEN_OUTBOX_STATUSES, Health, Snapshot

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CONNECTOR_OPERATIONS = ("grant", "revoke", "is_granted", "members")
DECISION_OUTCOMES = ("approve", "deny")
CHAT_PLATFORMS = ("slack", "teams")
# Slack gives up on an answer after 3 s: the buckets are dense below that.
ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
CONNECTOR_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The process's own series, and ``exposition()`` for a scrape."""

    def __init__(self, health: Health, clock: Clock) -> None:
        self.health = health
        self.clock = clock
        # A *_created series per labelled series doubles the page for nothing a dashboard
        # uses (process-wide setting of the client library).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        # Our own registry, not the global default: tests build several apps in one process.
        self.registry = CollectorRegistry()
        self.connector_calls = Counter(
            "clearance_connector_calls",
            "Calls to entitlement connectors, by connector, operation and outcome "
            "(ok, or the failure: unreachable, auth, no_such_group, no_such_user, rejected, "
            "timeout, cancelled, error).",
            ["connector", "operation", "outcome"],
            registry=self.registry,
        )
        self.connector_seconds = Histogram(
            "clearance_connector_call_seconds",
            "How long connector calls took, by connector and operation.",
            ["connector", "operation"],
            buckets=CONNECTOR_BUCKETS,
            registry=self.registry,
        )
        self.acks = Counter(
            "clearance_chat_acks",
            "Answers to requests from Slack (/slack/events) and Teams (/api/messages), by "
            "platform and HTTP status class (2xx, 4xx, 5xx).",
            ["platform", "status"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "clearance_chat_ack_seconds",
            "How long Clearance took to answer a request from Slack or Teams.",
            ["platform"],
            buckets=ACK_BUCKETS,
            registry=self.registry,
        )

    def start(self, connectors: Iterable[str], platforms: Iterable[str]) -> None:
        """Create the series for what this process serves, at zero."""
        for name in connectors:
            for operation in CONNECTOR_OPERATIONS:
                self.connector_calls.labels(name, operation, "ok")
                self.connector_seconds.labels(name, operation)
        for platform in platforms:
            for status in ("2xx", "4xx", "5xx"):
                self.acks.labels(platform, status)
            self.ack_seconds.labels(platform)

    def connector_call(self, connector: str, operation: str, outcome: str, seconds: float) -> None:
        self.connector_calls.labels(connector, operation, outcome).inc()
        self.connector_seconds.labels(connector, operation).observe(seconds)

    def ack(self, platform: str, status: int, seconds: float) -> None:
        self.acks.labels(platform, f"{status // 100}xx").inc()
        self.ack_seconds.labels(platform).observe(seconds)

    async def exposition(self) -> bytes:
        """This process's series and the database's, in the text format."""
        try:
            snapshot: Snapshot | None = await self.health.snapshot(self.clock.now())
        except Exception as exc:  # a scrape reports the outage rather than failing
            log.warning("metrics: the database could not be read: %s", type(exc).__name__)
            snapshot = None
        return generate_latest(_Scrape(self.registry, snapshot, self.clock.now().timestamp()))


@dataclass(frozen=True)
class _Scrape(Collector):
    """One scrape: the registry's series, then the database's (read just before)."""

    registry: CollectorRegistry
    snapshot: Snapshot | None
    now: float

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        up = GaugeMetricFamily(
            "clearance_database_up", "1 when the last scrape could read the database."
        )
        up.add_metric([], 1 if self.snapshot is not None else 0)
        yield up
        if self.snapshot is not None:
            yield from database_families(self.snapshot, self.now)


def database_families(snapshot: Snapshot, now: float) -> Iterator[Metric]:
    requests = GaugeMetricFamily(
        "clearance_requests", "Access requests by state.", labels=["state"]
    )
    for status in Status:
        requests.add_metric([status.value], snapshot.requests.get(status.value, 0))
    yield requests

    decisions = CounterMetricFamily(
        "clearance_decisions", "Approvers' decisions, by outcome.", labels=["outcome"]
    )
    for outcome in sorted({*DECISION_OUTCOMES, *snapshot.decisions}):
        decisions.add_metric([outcome], snapshot.decisions.get(outcome, 0))
    yield decisions

    active = GaugeMetricFamily(
        "clearance_grants_active", "Grants in force: requests whose access is active now."
    )
    active.add_metric([], snapshot.requests.get(Status.ACTIVE.value, 0))
    yield active

    rows = GaugeMetricFamily(
        "clearance_outbox_rows",
        "Outbox rows waiting to run (pending) or given up on (dead), by kind.",
        labels=["kind", "state"],
    )
    late = GaugeMetricFamily(
        "clearance_outbox_oldest_due_seconds",
        "How long ago the oldest pending row of each kind fell due (0: none is overdue).",
        labels=["kind"],
    )
    found = {(g.kind, g.status): g for g in snapshot.outbox}
    kinds = sorted({*EFFECT_TYPES, *(g.kind for g in snapshot.outbox)})
    for kind in kinds:
        for state in OPEN_OUTBOX_STATUSES:
            group = found.get((kind, state))
            rows.add_metric([kind, state], group.rows if group else 0)
        pending = found.get((kind, "pending"))
        oldest = pending.oldest_due if pending else None
        late.add_metric([kind], max(0.0, now - oldest.timestamp()) if oldest else 0.0)
    yield rows
    yield late

    head = GaugeMetricFamily(
        "clearance_audit_head_seq", "Sequence number of the last audit event in the chain."
    )
    head.add_metric([], snapshot.audit_head_seq)
    yield head
