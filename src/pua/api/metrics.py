"""Prometheus metrics, read from the engine when scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pua.runtime import PresenceRuntime

__all__ = ["metrics_text"]


class EngineCollector(Collector):
    """Turns the engine's counters and table into metric families."""

    def __init__(self, runtime: PresenceRuntime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        agent = self.runtime.agent
        records = GaugeMetricFamily(
            "pua_records", "Records by kind and state", labels=["kind", "state"]
        )
        counts: dict[tuple[str, str], int] = {}
        for record in agent.table.records():
            kind = "subscription" if record.key.watcher_uri else "publication"
            counts[(kind, record.state.value)] = counts.get((kind, record.state.value), 0) + 1
        for (kind, state), value in sorted(counts.items()):
            records.add_metric([kind, state], value)
        yield records
        sip = agent.endpoint.counters
        for name, help_text, value in (
            ("pua_sip_requests_sent", "Requests sent (new transactions)", sip["requests_sent"]),
            ("pua_sip_retransmissions", "Requests retransmitted (timer E)", sip["retransmissions"]),
            ("pua_sip_timeouts", "Transactions timed out (timer F)", sip["timeouts"]),
            ("pua_sip_requests_received", "Requests received", sip["requests_received"]),
            ("pua_sip_dropped", "Messages dropped or rejected", sip["dropped"]),
            ("pua_publish_sent", "PUBLISH requests sent", agent.counters["publish_sent"]),
            ("pua_subscribe_sent", "SUBSCRIBE requests sent", agent.counters["subscribe_sent"]),
            ("pua_notify_received", "NOTIFY requests received", agent.counters["notify_received"]),
            ("pua_refreshes", "Refreshes sent", agent.counters["refreshes"]),
            ("pua_retries", "Retries after a failure", agent.counters["retries"]),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        recoveries = CounterMetricFamily("pua_recoveries", "Recoveries by cause", labels=["cause"])
        recoveries.add_metric(["412"], agent.counters["recoveries_412"])
        recoveries.add_metric(["423"], agent.counters["recoveries_423"])
        yield recoveries
        responses = CounterMetricFamily(
            "pua_sip_responses", "Final answers by status", labels=["code"]
        )
        for code, value in sorted(agent.responses_by_status.items()):
            responses.add_metric([str(code)], value)
        yield responses
        # The store writes (observed once persistence is configured).
        store = getattr(self.runtime, "store_write_seconds", None)
        buckets = store.buckets() if store is not None else [("+Inf", 0)]
        total = store.total if store is not None else 0.0
        yield HistogramMetricFamily(
            "pua_db_write_seconds",
            "Time spent writing records to the database",
            buckets=buckets,
            sum_value=total,
        )


def metrics_text(runtime: PresenceRuntime) -> tuple[bytes, str]:
    """The exposition text and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(runtime))
    return generate_latest(registry), CONTENT_TYPE_LATEST
