"""Prometheus metrics, read from the engine when scraped."""

from __future__ import annotations

import gc
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pua.adapters import Adapters
from pua.cluster import ClusterNode
from pua.runtime import PresenceRuntime
from pua.runtime.loop import gc_pauses
from pua.runtime.persistence import WriteTimer

__all__ = ["metrics_text"]


class EngineCollector(Collector):
    """Turns the engine's counters and table into metric families."""

    def __init__(
        self,
        runtime: PresenceRuntime,
        store_timer: WriteTimer | None,
        adapters: Adapters | None = None,
    ) -> None:
        self.runtime = runtime
        self.store_timer = store_timer
        self.adapters = adapters or Adapters()
        self.registrations = self.adapters.registrations

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        records = GaugeMetricFamily(
            "pua_records", "Records by kind and state", labels=["kind", "state"]
        )
        for (kind, state), value in sorted(runtime.records_by_state().items()):
            if value:
                records.add_metric([kind, state], value)
        yield records
        sip = runtime.sip_counters()
        engine = runtime.counters()
        for name, help_text, value in (
            ("pua_sip_requests_sent", "Requests sent (new transactions)", sip["requests_sent"]),
            ("pua_sip_retransmissions", "Requests retransmitted (timer E)", sip["retransmissions"]),
            ("pua_sip_timeouts", "Transactions timed out (timer F)", sip["timeouts"]),
            ("pua_sip_requests_received", "Requests received", sip["requests_received"]),
            ("pua_sip_dropped", "Messages dropped or rejected", sip["dropped"]),
            ("pua_publish_sent", "PUBLISH requests sent", engine["publish_sent"]),
            ("pua_subscribe_sent", "SUBSCRIBE requests sent", engine["subscribe_sent"]),
            ("pua_notify_received", "NOTIFY requests received", engine["notify_received"]),
            ("pua_refreshes", "Refreshes sent", engine["refreshes"]),
            ("pua_retries", "Retries after a failure", engine["retries"]),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        recoveries = CounterMetricFamily("pua_recoveries", "Recoveries by cause", labels=["cause"])
        recoveries.add_metric(["412"], engine["recoveries_412"])
        recoveries.add_metric(["423"], engine["recoveries_423"])
        yield recoveries
        responses = CounterMetricFamily(
            "pua_sip_responses", "Final answers by status", labels=["code"]
        )
        for code, value in sorted(runtime.responses_by_status().items()):
            responses.add_metric([str(code)], value)
        yield responses
        for name, help_text, histogram in (
            (
                "pua_timer_lateness_seconds",
                "How late records' refreshes, retries and expiries were handled",
                runtime.timer_lateness(),
            ),
            (
                "pua_loop_lag_seconds",
                "How late the event loop ran a periodic tick",
                runtime.loop_lag.histogram,
            ),
        ):
            yield HistogramMetricFamily(
                name, help_text, buckets=histogram.buckets(), sum_value=histogram.total
            )
        yield from _collector()
        # Registrations (pua_usrloc), when they are on.
        if self.registrations is not None:
            counters = self.registrations.counters
            yield GaugeMetricFamily(
                "pua_registration_bindings",
                "Registration bindings held",
                value=len(self.registrations.table),
            )
            for name, help_text, value in (
                ("pua_registers", "REGISTERs taken", counters["registers"]),
                ("pua_registers_refused", "REGISTERs refused (usrloc_allow)", counters["refused"]),
                (
                    "pua_registration_publications",
                    "PUBLISHes started for bindings",
                    counters["publications"],
                ),
                ("pua_reginfo_notifies", "reg NOTIFYs applied", counters["reginfo_notifies"]),
            ):
                yield CounterMetricFamily(name, help_text, value=value)
        dialogs, bla = self.adapters.dialogs, self.adapters.bla
        if dialogs is not None:
            yield GaugeMetricFamily(
                "pua_dialog_presentities", "Users with calls held", value=dialogs.presentity_count
            )
            yield from _counters("pua_dialog", "Call events and their PUBLISHes", dialogs.counters)
        if bla is not None:
            yield GaugeMetricFamily("pua_bla_lines", "Shared lines", value=len(bla.lines()))
            yield from _counters(
                "pua_bla", "Shared line SUBSCRIBEs, NOTIFYs, PUBLISHes", bla.counters
            )
        gateway = self.adapters.xmpp
        if gateway is not None:
            yield GaugeMetricFamily(
                "pua_xmpp_connected",
                "1 while the XMPP component's stream is up",
                value=int(gateway.component.connected),
            )
            yield GaugeMetricFamily(
                "pua_xmpp_users", "XMPP users the gateway knows", value=len(gateway.state.users)
            )
            yield from _counters(
                "pua_xmpp",
                "XMPP stanzas and their conversions",
                {**gateway.counters, **gateway.component.counters},
            )
        # The store writes (observed once persistence is configured).
        store = self.store_timer
        buckets = store.buckets() if store is not None else [("+Inf", 0)]
        total = store.total if store is not None else 0.0
        yield HistogramMetricFamily(
            "pua_db_write_seconds",
            "Time spent writing records to the database",
            buckets=buckets,
            sum_value=total,
        )


def _counters(prefix: str, what: str, counters: dict[str, int]) -> Iterator[Metric]:
    for name, value in sorted(counters.items()):
        yield CounterMetricFamily(f"{prefix}_{name}", f"{what}: {name}", value=value)


class ClusterCollector(Collector):
    """This node's part in a cluster: its partitions, the nodes it sees,
    what it took over, gave up and carried to others."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        stats = node.stats
        yield GaugeMetricFamily(
            "pua_cluster_partitions_owned", "Partitions this node owns", value=len(node.owned)
        )
        yield GaugeMetricFamily(
            "pua_cluster_nodes_alive",
            "Nodes alive, as the last turn saw them",
            value=sum(1 for n in node.nodes.values() if n.alive),
        )
        yield GaugeMetricFamily(
            "pua_cluster_database_reachable",
            "1 when the last turn reached the database",
            value=1 if node.reachable else 0,
        )
        yield GaugeMetricFamily(
            "pua_cluster_last_takeover_seconds",
            "How long the last takeover of partitions took (reading and resuming their records)",
            value=stats.last_takeover,
        )
        for name, what in (
            ("turns", "Turns of the lease loop"),
            ("failed_turns", "Turns that could not reach the database"),
            ("claimed", "Partitions claimed (taken over)"),
            ("adopted_records", "Records taken over from other nodes' partitions"),
            ("released", "Partitions given up to other nodes"),
            ("lost", "Partitions found to be another node's while held here"),
            ("forwarded", "API changes carried to the owning node"),
            ("handed_notifies", "NOTIFYs handed to the node that owns their dialog"),
        ):
            yield CounterMetricFamily(f"pua_cluster_{name}", what, value=getattr(stats, name))


def _collector() -> Iterator[Metric]:
    """The cyclic collector: objects frozen out of its way (what a restart
    restored), its passes by generation and, when pua times them (the
    service does), how long each held the loop."""
    yield GaugeMetricFamily(
        "pua_gc_frozen_objects", "Objects frozen out of the collector's way", gc.get_freeze_count()
    )
    passes = CounterMetricFamily(
        "pua_gc_collections", "Passes of the collector by generation", labels=["generation"]
    )
    for generation, stats in enumerate(gc.get_stats()):
        passes.add_metric([str(generation)], stats["collections"])
    yield passes
    pauses = gc_pauses()
    if pauses is not None:
        family = HistogramMetricFamily(
            "pua_gc_pause_seconds",
            "How long each pass of the collector held the loop",
            labels=["generation"],
        )
        for generation, histogram in enumerate(pauses.histograms):
            family.add_metric([str(generation)], histogram.buckets(), histogram.total)
        yield family


def metrics_text(
    runtime: PresenceRuntime,
    store_timer: WriteTimer | None = None,
    adapters: Adapters | None = None,
    cluster: ClusterNode | None = None,
) -> tuple[bytes, str]:
    """The exposition text and its content type; ``store_timer`` is the
    store sync's, when one is attached; ``adapters`` those that run;
    ``cluster`` this node's part in a cluster."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(runtime, store_timer, adapters))
    if cluster is not None:
        registry.register(ClusterCollector(cluster))
    return generate_latest(registry), CONTENT_TYPE_LATEST
