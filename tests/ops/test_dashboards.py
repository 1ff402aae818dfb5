"""Grafana dashboard and Prometheus rules: every metric they use is exported, and the
real tools (promtool, prometheus) accept the files and scrape a running daemon."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from marllbd.daemon.app import Daemon
from marllbd.daemon.fallback import Reason
from marllbd.ipc.ring import FrameError
from tests.daemon.test_app import Producer, decide, make_config, until, value
from tests.ops.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "configs" / "grafana" / "dashboards" / "marllbd.json"
PROM = REPO / "configs" / "prometheus"
_METRIC = re.compile(r"\bmarllbd_[a-z0-9_]+")


def _exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"]]
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def _used_metrics() -> set[str]:
    """Every marllbd_* metric the PromQL of the dashboard and the alert rules names, as
    its exported family (a histogram's _bucket/_sum/_count are the histogram)."""
    return {_family(m) for e in _exprs() for m in _METRIC.findall(e)}


def _family(sample: str) -> str:
    return re.sub(r"_(bucket|sum|count|created)$", "", sample)


def _samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }


async def _scrape(d: Daemon) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", d.metrics_server.port)
    writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
    body = (await reader.read()).decode().split("\r\n\r\n", 1)[1]
    writer.close()
    return body


async def _scrape_running_daemon(region_name: str) -> str:
    """A scrape after decisions and an invalid frame: every kind of sample has values."""
    prod = Producer(region_name)
    d = Daemon(make_config(region_name))
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(d.ready.wait(), 60)
    try:
        for _ in range(3):
            await decide(d, prod)
        prod.publish(active=5)  # an invalid frame
        await until(lambda: value(d, "marllbd_invalid_frames_total", field="active") == 1)
        return await _scrape(d)
    finally:
        d.stop_event.set()
        await task


def test_dashboard_shape() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "marllbd-overview"
    for panel in dash["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "marllbd-prometheus"}
    prov = yaml.safe_load(
        (REPO / "configs/grafana/provisioning/datasources/marllbd.yml").read_text()
    )
    assert prov["datasources"][0]["uid"] == "marllbd-prometheus"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("weight", "active flows", "flow duration", "jain", "latency", "frame age", "torn",
                  "fallback", "restarts", "swaps", "watchdog"):  # fmt: skip
        assert topic in titles, topic


async def test_every_metric_used_is_in_the_first_scrape_of_a_healthy_daemon(
    region_name: str,
) -> None:
    """Ready and attached to a data plane, before any frame: the first scrape already has
    every metric the dashboard and the alerts use, and every known label value at 0 (a
    healthy daemon's panels show 0, not "no data")."""
    prod = Producer(region_name)
    d = Daemon(make_config(region_name))
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(d.ready.wait(), 60)
        await until(lambda: d.region is not None)  # attached (read in-process, not scraped)
        samples = _samples(await _scrape(d))
    finally:
        d.stop_event.set()
        await task
    exported = {_family(name) for name, _ in samples}
    used = _used_metrics()
    assert len(used) >= 15 and "marllbd_decision_latency_seconds" in used
    missing = sorted(used - exported)
    assert missing == [], f"used by dashboards/alerts but not in the first scrape: {missing}"
    servers = [str(i) for i in range(prod.region.geometry.num_servers)]
    known = [
        ("marllbd_fallbacks_total", "reason", [r.value for r in Reason]),
        ("marllbd_invalid_frames_total", "field", list(FrameError.FIELDS)),
        ("marllbd_server_weight", "server", servers),
    ]
    for name, label, values in known:
        for v in values:
            assert samples.get((name, frozenset({(label, v)}))) == 0.0, (name, label, v)


def test_promtool_checks_config_and_rules() -> None:
    promtool = require_tool("promtool")
    for args in (
        ["check", "config", str(PROM / "prometheus.yml")],
        ["check", "rules", str(PROM / "alerts.yml")],
    ):
        out = subprocess.run([promtool, *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def _alert_names() -> list[str]:
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    cases = [c for t in tests["tests"] for c in t["alert_rule_test"]]
    for name in _alert_names():
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no case where it is silent"
    assert {c["alertname"] for c in cases} <= set(_alert_names())


def test_promtool_alert_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    out = subprocess.run(
        [promtool, "test", "rules", str(PROM / "alerts_test.yml")], capture_output=True, text=True
    )
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


async def test_promtool_accepts_the_metrics(region_name: str) -> None:
    promtool = require_tool("promtool")
    body = await _scrape_running_daemon(region_name)
    out = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "" and out.stderr.strip() == "", (
        out.stdout + out.stderr
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shipped_config_for(tmp_path: Path, port: int) -> Path:
    """The shipped prometheus.yml and alerts.yml in tmp_path, only the target changed."""
    conf = yaml.safe_load((PROM / "prometheus.yml").read_text())
    [job] = conf["scrape_configs"]
    [static] = job["static_configs"]
    static["targets"] = [f"127.0.0.1:{port}"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False))
    for rule_file in conf["rule_files"]:
        shutil.copy(PROM / rule_file, tmp_path / rule_file)
    return path


def _api(web: int, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/{path}", timeout=2) as r:
            data: dict = json.load(r)["data"]
            return data
    except OSError:
        return None  # not listening yet


async def test_real_prometheus_scrapes_the_daemon(region_name: str, tmp_path: Path) -> None:
    """The shipped scrape config and rules, unchanged but for the target, in a real Prometheus:
    the daemon's metrics come back with the shipped labels, and every alert rule evaluates."""
    prometheus = require_tool("prometheus")
    prod = Producer(region_name)
    d = Daemon(make_config(region_name))
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(d.ready.wait(), 60)
    web = _free_port()
    conf = _shipped_config_for(tmp_path, d.metrics_server.port)
    shipped = yaml.safe_load((PROM / "prometheus.yml").read_text())
    [shipped_job] = shipped["scrape_configs"]
    [shipped_static] = shipped_job["static_configs"]
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    alerts = set(_alert_names())
    query = "query?query=" + urllib.parse.quote("marllbd_decisions_total")
    result: list = []
    health: dict[str, str] = {}
    try:
        # Scrapes and rule evaluations run at the shipped intervals (5 s), from a random offset.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await decide(d, prod)
            if not result:
                result = (_api(web, query) or {}).get("result", [])
            rules = _api(web, "rules?type=alert") or {"groups": []}
            health = {r["name"]: r["health"] for g in rules["groups"] for r in g["rules"]}
            if result and set(health) >= alerts and all(h == "ok" for h in health.values()):
                break
            await asyncio.sleep(0.25)
        log.flush()
        output = (tmp_path / "prometheus.log").read_text()[-3000:]
        assert result, f"prometheus never returned marllbd_decisions_total\n{output}"
        assert float(result[0]["value"][1]) >= 1
        labels = result[0]["metric"]
        assert labels["job"] == shipped_job["job_name"] == "marllbd"
        assert labels["lb"] == shipped_static["labels"]["lb"]
        assert labels["instance"] == f"127.0.0.1:{d.metrics_server.port}"
        assert set(health) == alerts, (sorted(alerts - set(health)), output)
        assert all(h == "ok" for h in health.values()), (health, output)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        d.stop_event.set()
        await task


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yml")))
def test_yaml_files_parse(path: Path) -> None:
    assert yaml.safe_load(path.read_text()) is not None
