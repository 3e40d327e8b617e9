"""The operator's files stay true: the example pua.toml lists every setting
with its default, the systemd unit is valid, every metric is documented."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, cast

import pytest

from pua.adapters import Adapters
from pua.adapters.bla import SharedLines
from pua.adapters.dialogs import Dialogs
from pua.adapters.registrations import Registrations
from pua.adapters.xmpp import XmppGateway, XmppSettings
from pua.api.metrics import metrics_text
from pua.cli import serve
from pua.cluster import ClusterNode
from pua.config import Settings, load_settings
from pua.core import EngineConfig
from pua.runtime import Listen, PresenceRuntime
from pua.runtime.loop import watch_gc
from pua.runtime.persistence import WriteTimer
from pua.store.leases import LeaseStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TOML = ROOT / "docs" / "examples" / "pua.toml"
UNIT = ROOT / "docs" / "examples" / "pua.service"
METRICS_DOC = ROOT / "docs" / "metrics.md"


# -- pua.toml --------------------------------------------------------------------


def test_example_config_loads_as_the_defaults() -> None:
    """docs/examples/pua.toml is a valid config whose values are the defaults."""
    assert load_settings(config_file=EXAMPLE_TOML, environ={}) == Settings()


def test_example_config_documents_every_setting() -> None:
    """Every setting appears in the example (set, or commented out when it
    is unset by default), after a comment that gives its default."""
    lines = EXAMPLE_TOML.read_text().splitlines()
    for item in fields(Settings):
        where = [i for i, line in enumerate(lines)
                 if re.match(rf"#? ?{item.name} = ", line)]
        assert where, f"{item.name} is missing from {EXAMPLE_TOML.name}"
        if item.default is None:
            assert lines[where[0]].startswith("#"), f"{item.name} is unset by default"
        # The comment block above the setting says what it does and its default.
        above = []
        i = where[0] - 1
        while i >= 0 and lines[i].startswith("#") and not re.match(r"# ?\w+ = ", lines[i]):
            above.append(lines[i])
            i -= 1
        if not above:  # t2, t4 share t1's comment
            i = where[0] - 1
            while i >= 0 and not lines[i].startswith("#"):
                i -= 1
            while i >= 0 and lines[i].startswith("#"):
                above.append(lines[i])
                i -= 1
        assert any("Default" in line for line in above), f"{item.name}: no default in its comment"


# -- pua.service -----------------------------------------------------------------

# The unit keys this file may use, by section (systemd.unit(5), systemd.service(5),
# systemd.exec(5), systemd.kill(5)): the check used when systemd-analyze is absent.
KNOWN_KEYS = {
    "Unit": {"Description", "Documentation", "After", "Wants", "Requires", "Before"},
    "Service": {
        "Type", "User", "Group", "ExecStart", "ExecReload", "Restart", "RestartSec",
        "KillSignal", "TimeoutStopSec", "StateDirectory", "StateDirectoryMode",
        "WorkingDirectory", "ConfigurationDirectory", "Environment", "EnvironmentFile",
        "NoNewPrivileges", "ProtectSystem", "ReadWritePaths", "ProtectHome", "PrivateTmp",
        "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictAddressFamilies",
        "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
        "SystemCallArchitectures", "CapabilityBoundingSet", "AmbientCapabilities", "UMask",
    },
    "Install": {"WantedBy"},
}


def _parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of Key=Value lines; anything else fails the test."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if match := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(match[1], {})
            continue
        match = re.fullmatch(r"([A-Za-z]+)=(.*)", line)
        assert match and current is not None, f"line {number} is not Key=Value in a section: {line!r}"
        current.setdefault(match[1], []).append(match[2])
    return sections


def test_unit_file_syntax_and_keys() -> None:
    """The unit has [Unit], [Service] and [Install], only Key=Value lines,
    known keys, and an absolute ExecStart."""
    sections = _parse_unit(UNIT.read_text())
    assert set(sections) == {"Unit", "Service", "Install"}
    for name, keys in sections.items():
        unknown = set(keys) - KNOWN_KEYS[name]
        assert not unknown, f"unknown keys in [{name}]: {unknown}"
    exec_start = sections["Service"]["ExecStart"]
    assert len(exec_start) == 1 and exec_start[0].startswith("/")


def test_unit_runs_pua_serve_hardened() -> None:
    """The unit runs `pua serve --config /etc/pua/pua.toml` (flags pua
    accepts) as its own user, restarts on failure, and is confined to its
    state directory."""
    service = _parse_unit(UNIT.read_text())["Service"]
    argv = shlex.split(service["ExecStart"][0])
    assert Path(argv[0]).name == "pua" and argv[1:] == ["serve", "--config", "/etc/pua/pua.toml"]
    serve.make_context("serve", argv[2:])  # raises on an unknown flag
    assert service["Type"] in (["simple"], ["exec"])
    assert service["Restart"] == ["on-failure"]
    assert service["User"][0] not in ("root", "0")
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    state = "/var/lib/" + service["StateDirectory"][0]
    assert service["WorkingDirectory"] == [state]
    assert state in service["ReadWritePaths"][0].split()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say about the unit (its
    ExecStart pointed at this test's pua, since the unit names where pua
    is installed on a server)."""
    pua = Path(sys.executable).parent / "pua"
    if not pua.exists():
        pua = Path(shutil.which("true") or "/bin/true")
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={pua}", UNIT.read_text(), flags=re.M)
    unit = tmp_path / "pua.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)],
                            capture_output=True, text=True, timeout=60, check=False)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "pua.service" in line]
    assert result.returncode == 0 and complaints == [], result.stderr


# -- metrics.md ------------------------------------------------------------------


def _metrics_of_a_running_runtime() -> str:
    watch_gc()  # as pua serve does: the collector's passes timed

    async def scrape() -> str:
        async with PresenceRuntime(EngineConfig(), listen=[Listen("udp", "127.0.0.1", 0)]) as runtime:
            timer = WriteTimer()
            timer.observe(0.002)
            registrations = Registrations(runtime)
            gateway = XmppGateway(runtime, XmppSettings(component="sip.example.com", secret="s"))
            adapters = Adapters(registrations=registrations, dialogs=Dialogs(runtime),
                                bla=SharedLines(runtime, registrations), xmpp=gateway)
            # A cluster node's metrics (nothing is connected to build them).
            leases = LeaseStore("postgresql://pua@127.0.0.1/pua", partitions=16)
            node = ClusterNode(runtime, cast(Any, None), leases, node_id="a",
                               api_url="http://a", sip="udp:a", lease=3.0)
            return metrics_text(runtime, timer, adapters, node)[0].decode()

    return asyncio.run(scrape())


def test_every_metric_is_documented() -> None:
    """Every metric name /metrics exposes (families and their series) is in
    docs/metrics.md, in a table row that gives its type."""
    text = _metrics_of_a_running_runtime()
    doc = METRICS_DOC.read_text()
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))
    assert "pua_publish_sent_total" in families or "pua_publish_sent" in families
    series = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
              if line and not line.startswith("#")}
    for name in set(families) | series:
        assert f"`{name}`" in doc, f"{name} is not in docs/metrics.md"
    rows = {m[0]: m[1] for m in re.findall(r"^\| `(\w+)` \| (\w+) \|", doc, flags=re.M)}
    for name, kind in families.items():
        assert rows.get(name) == kind, f"{name}: documented as {rows.get(name)}, exposed as {kind}"
    assert set(rows) == set(families), "docs/metrics.md lists a metric /metrics does not expose"
