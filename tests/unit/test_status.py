"""status.rows (states and figures), sorting, selection and the table/JSON views: pure, data-driven."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hostctl.errors import HostctlError
from hostctl.inventory.schema import App
from hostctl.inventory.spec import AppSpec
from hostctl.status import formatting as status_format, rows as status
from hostctl.status.collect import CgroupMemory, Observed, ProcSample

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "status.yaml").read_text())
NOW = 1500.0


def _app(customer: str = "acme", name: str = "web", enabled: bool = True) -> AppSpec:
    return AppSpec(customer, name, App(domains=[f"{name}.{customer}.example"], wsgi="app:application", enabled=enabled))


def _observed(case: dict[str, Any]) -> Observed:
    vassals = {"acme_web": case["vassal"]} if "vassal" in case else {}
    return Observed(now=NOW, emperor=case["emperor"], vassals=vassals, emperor_absent=case.get("emperor_absent", False),
                    quarantined={"acme": case["quarantined"]} if case.get("quarantined") else {},
                    stats_errors={"acme_web": case["stats_error"]} if "stats_error" in case else {},
                    after={"acme_web": ProcSample(at=1.0, started=case["master_started"])} if "master_started" in case else {},
                    cgroups={"acme": CgroupMemory(*case["cgroup"])} if "cgroup" in case else {},
                    emperor_started=case.get("emperor_started"))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_state_and_figures(case: dict[str, Any]) -> None:
    got = status.row(_app(enabled=case.get("enabled", True)), _observed(case)).as_dict()
    want = case["expect"]
    assert {k: got[k] for k in want} == want, f"GOT {json.dumps(got, indent=1)}"


def test_cpu_percent_counts_only_processes_seen_in_both_samples() -> None:
    before = ProcSample(at=10.0, rss={1: 10, 2: 20}, cpu={1: 1.0, 2: 5.0})
    after = ProcSample(at=12.0, rss={1: 15, 3: 40}, cpu={1: 2.0, 3: 9.0})  # 2 exited, 3 is new
    emperor = {"vassals": [{"id": "acme_web.ini", "pid": 1, "ready": 1, "accepting": 1, "last_run": 1400}]}
    got = status.row(_app(), Observed(now=NOW, emperor=emperor, before={"acme_web": before}, after={"acme_web": after}))
    assert got.cpu_percent == 50.0  # 1 CPU second over 2 s
    assert got.rss_bytes == 55  # the tree as of the second sample


def test_rss_falls_back_to_uwsgi_memory_report_and_cgroup_is_per_customer() -> None:
    emperor = {"vassals": [{"id": "acme_web.ini", "pid": 1, "ready": 1, "accepting": 1}]}
    vassal = {"pid": 1, "workers": [{"pid": 2, "rss": 1000}, {"pid": 3, "rss": 500}]}
    observed = Observed(now=NOW, emperor=emperor, vassals={"acme_web": vassal},
                        cgroups={"acme": CgroupMemory(64 << 20, 256 << 20)})
    got = status.row(_app(), observed)
    assert (got.rss_bytes, got.memory_bytes, got.memory_limit_bytes, got.cpu_percent) == (1500, 64 << 20, 256 << 20, None)
    other = status.row(_app("globex"), observed)
    assert other.memory_bytes is None and other.state == "down"


def test_stats_socket_errors_are_reported_only_for_apps_that_should_answer() -> None:
    emperor = {"vassals": [{"id": "acme_web.ini", "pid": 1, "ready": 1, "accepting": 1}], "blacklist": []}
    errors = {"acme_web": "stats socket /run/acme/web.stats: permission denied",
              "acme_old": "stats socket /run/acme/old.stats: no such file or directory"}
    observed = Observed(now=NOW, emperor=emperor, stats_errors=errors, problems={"acme_web": ["cgroup of pid 1: gone"]})
    web, old = status.rows([_app(), _app(name="old", enabled=False)], observed)
    assert web.problems == ["cgroup of pid 1: gone", "stats socket /run/acme/web.stats: permission denied"]
    assert web.requests is None and web.workers is None
    assert old.state == "stopped" and old.problems == []


def _rows() -> list[status.Row]:
    base = dict(healthy=True, detail="", pid=None, workers=None, busy_workers=None, requests=None, avg_rt_ms=None,
                listen_queue=None, memory_bytes=None, memory_limit_bytes=None, respawns=None, worker_respawns=None,
                uptime_seconds=None)
    return [
        status.Row(customer="b", app="web", state="running", rss_bytes=30 << 20, cpu_percent=1.0, **base),
        status.Row(customer="a", app="web", state="running", rss_bytes=10 << 20, cpu_percent=90.0, **base),
        status.Row(customer="c", app="web", state="stopped", rss_bytes=None, cpu_percent=None, **base),
    ]


@pytest.mark.parametrize("by, order", [("name", "abc"), ("memory", "bac"), ("cpu", "abc")])
def test_sort(by: str, order: str) -> None:
    assert "".join(r.customer for r in status.sort_rows(_rows(), by)) == order


def test_select_apps_refuses_unknown_customers(tmp_path: Path) -> None:
    from hostctl.inventory import loader as inventory

    (tmp_path / "customers").mkdir()
    (tmp_path / "hostctl.yaml").write_text("{}\n")
    for name in ("acme", "globex"):
        (tmp_path / "customers" / f"{name}.yaml").write_text(f"apps:\n  web:\n    domains: [{name}.example]\n    wsgi: a:b\n")
    inv = inventory.load(tmp_path)
    assert [a.id for a in status.select_apps(inv, [])] == ["acme_web", "globex_web"]
    assert [a.id for a in status.select_apps(inv, ["globex"])] == ["globex_web"]
    with pytest.raises(HostctlError, match=r"no such customer: 'nope' \(known: acme, globex\)"):
        status.select_apps(inv, ["globex", "nope"])


@pytest.mark.parametrize("n, text", [(None, "-"), (0, "0B"), (1023, "1023B"), (1536, "1.5K"), (27 << 20, "27.0M"),
                                     (300 << 20, "300M"), (3 << 30, "3.0G")])
def test_size(n: int | None, text: str) -> None:
    assert status_format.size(n) == text


@pytest.mark.parametrize("s, text", [(None, "-"), (5, "5s"), (63, "1m03s"), (3 * 3600 + 120, "3h02m"), (2 * 86400 + 3600, "2d01h")])
def test_duration(s: int | None, text: str) -> None:
    assert status_format.duration(s) == text


def test_table_aligns_columns_and_explains_unhealthy_rows() -> None:
    rows = [status.row(_app(), Observed(now=NOW, emperor={"vassals": [], "blacklist": []}, stats_errors={}))]
    rows.append(status.row(_app("globex"), Observed(
        now=NOW, emperor={"vassals": [{"id": "globex_web.ini", "pid": 5, "ready": 1, "accepting": 1, "last_run": 1440}]},
        vassals={"globex_web": {"pid": 5, "listen_queue": 0, "workers": [{"pid": 6, "requests": 12, "avg_rt": 1500, "respawn_count": 1}]}},
        cgroups={"globex": CgroupMemory(50 << 20, 200 << 20)},
        after={"globex_web": ProcSample(at=1.0, rss={5: 20 << 20, 6: 10 << 20}, cpu={5: 0.0, 6: 0.0})})))
    text = status_format.table(rows, ["the Emperor's stats socket /run/emperor.stats: connection refused"])
    lines = text.splitlines()
    assert lines[0].split() == [t for t, _ in status_format.COLUMNS]
    assert lines[1].split() == ["acme", "web", "down", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "web.acme.example"]
    assert lines[2].split() == ["globex", "web", "running", "1", "12", "1.5ms", "0", "30.0M", "-", "50.0M/200M", "(25%)", "-", "0", "-",
                                "1m00s", "web.globex.example"]
    assert lines[0].index("REQS") + len("REQS") == lines[2].index("12") + 2  # right-aligned numbers
    assert lines[4] == "could not read the Emperor's stats socket /run/emperor.stats: connection refused"
    assert lines[5] == "acme/web: down: the Emperor has no vassal for it (has `hostctl apply` run?)"


def test_json_has_the_documented_keys() -> None:
    rows = [status.row(_app(), Observed(now=NOW, emperor=None))]
    doc = json.loads(status_format.to_json(rows, "nope", ["the quarantine record x: permission denied"], healthy=False))
    assert list(doc) == ["version", "healthy", "emperor_error", "problems", "apps"]
    assert doc["problems"] == ["the quarantine record x: permission denied"]
    assert tuple(doc["apps"][0]) == status.JSON_KEYS
    assert doc["apps"][0]["state"] == "unknown" and doc["healthy"] is False


def test_watch_screen_sorts_and_counts_unhealthy_rows() -> None:
    from hostctl.status import watch as status_watch

    rows = _rows()
    bad = status.Row(**{**rows[2].as_dict(), "customer": "d", "state": "down", "healthy": False, "detail": "gone"})
    lines = status_watch.screen_lines(rows + [bad], ["the Emperor's stats socket x: connection refused"], "memory", 2.0, "12:00:00")
    assert lines[0].startswith("hostctl status  12:00:00  every 2 s  [sorted by memory]  4 app(s), 1 unhealthy")
    assert [line.split()[0] for line in lines[3:7]] == ["b", "a", "c", "d"]  # heaviest RSS first
    assert lines[-2:] == ["could not read the Emperor's stats socket x: connection refused", "d/web: down: gone"]
