"""Soak: the daemon on the simulator at 200 Hz frames while the data plane is
killed and restarted every minute.  Prints one JSON line per minute and a summary:
RSS growth (target < 5 %), decisions missed beyond those counted (target 0), and
decision-latency p99 per minute (target: stable within 2x).

    python benchmarks/soak.py [--seconds 600] [--port 9470]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from marllbd.ipc import Region, RegionError
from marllbd.ipc.region import region_path
from marllbd.sim.publisher import region_names
from marllbd.sim.scenario import load_scenario

BUCKET_PREFIX = "marllbd_decision_latency_seconds_bucket"


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    out = {}
    for line in lines:
        if line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            out[name] = float(v)
    return out


def p99(before: dict[str, float], after: dict[str, float]) -> float:
    """p99 of the decisions between two scrapes, from the histogram's bucket deltas,
    interpolated within its bucket as Prometheus' histogram_quantile does."""
    buckets = sorted(
        (
            float(k.split('le="')[1].rstrip('"}').replace("+Inf", "inf")),
            after[k] - before.get(k, 0.0),
        )
        for k in after
        if k.startswith(BUCKET_PREFIX)
    )
    total = buckets[-1][1]
    if total <= 0:
        return float("nan")
    rank = 0.99 * total
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return float("inf")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def published(region: str) -> tuple[int, int]:
    """(frames published, producer pid) of the region's current producer."""
    try:
        r = Region.attach(region)
    except RegionError:
        return 0, 0
    n, pid = r.frames_published(), int(r.hdr["producer_pid"])
    r.close()
    return n, pid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--port", type=int, default=9470)
    args = ap.parse_args()
    region = f"soak-{os.getpid()}"
    conf = Path(tempfile.mkdtemp()) / "soak.toml"
    # paper-7 at speed 50: a 0.25 s interval becomes 5 ms, i.e. 200 frames/s per LB.
    conf.write_text(
        "[daemon]\npoll_period = 0.001\n"
        f'[backend]\nkind = "sim"\nregion = "{region}"\n'
        '[backend.sim]\nscenario = "paper-7"\nspeed = 50.0\n'
        f'[metrics]\nport = {args.port}\n[logging]\nformat = "json"\nlevel = "warning"\n'
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "marllbd.cli", "run", "--config", str(conf)],
        stdout=subprocess.DEVNULL,
    )
    name = f"{region}-0"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if scrape(args.port).get("marllbd_decisions_total", 0) > 100:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        start = time.monotonic()
        base = scrape(args.port)
        base_rss = rss_kib(daemon.pid)
        total_published, prev, minute, killed = 0, base, 0, 0
        first_pub, _ = published(name)
        p99s = []
        while time.monotonic() - start < args.seconds:
            time.sleep(min(60.0, args.seconds - (time.monotonic() - start)))
            minute += 1
            # Count this run's frames, then kill the data plane: the backend restarts it.
            count, pid = published(name)
            if pid != killed:  # not the dead producer's leftover region
                total_published += count - first_pub
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed = pid
            first_pub = 0
            now = scrape(args.port)
            p = p99(prev, now)
            p99s.append(p)
            print(json.dumps({
                "minute": minute,
                "decisions": now["marllbd_decisions_total"] - prev["marllbd_decisions_total"],
                "p99_s": p,
                "rss_kib": rss_kib(daemon.pid),
                "producer_restarts": now["marllbd_producer_restarts_total"],
            }), flush=True)  # fmt: skip
            prev = now
        time.sleep(2.0)
        end = scrape(args.port)
        count, pid = published(name)
        if pid != killed:
            total_published += count
        d = {k: end.get(k, 0.0) - base.get(k, 0.0) for k in end}
        counted = (
            d["marllbd_decisions_total"]
            + d["marllbd_frames_skipped_total"]
            + d["marllbd_stale_frames_total"]
            + sum(v for k, v in d.items() if k.startswith("marllbd_invalid_frames_total"))
        )  # fmt: skip
        finite = [x for x in p99s if x == x]
        summary = {
            "seconds": args.seconds,
            "rss_growth_pct": 100.0 * (rss_kib(daemon.pid) - base_rss) / base_rss,
            "frames_published": total_published,
            "decisions": d["marllbd_decisions_total"],
            "missed_uncounted": max(total_published - counted, 0),
            "p99_min_s": min(finite) if finite else None,
            "p99_max_s": max(finite) if finite else None,
            "p99_stable_within_2x": bool(finite) and max(finite) <= 2 * min(finite),
        }
        print(json.dumps({"summary": summary}), flush=True)
        return 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        # A data plane this script SIGKILLed just before the end cannot remove its
        # regions, and its successor may not have started: remove what is left.
        for left in region_names(region, load_scenario("paper-7").lb_nodes):
            with contextlib.suppress(FileNotFoundError):
                region_path(left).unlink()


if __name__ == "__main__":
    sys.exit(main())
