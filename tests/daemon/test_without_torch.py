"""The daemon serves the shipped SAC-GRU checkpoint from a process in which torch cannot
be imported: marllbd and its own dependencies only, as `make install` fills the service
venv (the package without the `rl` extra)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from importlib.metadata import distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.daemon.test_e2e import free_port, scrape, wait_for

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs/policies/seed-16-sac-gru"


def link_site(dest: Path, requirements: Iterable[str]) -> Path:
    """A site directory `dest` of links to what this venv holds of the distributions
    `requirements` name and, transitively, of those they require without extras: the
    venv `pip install` of those requirements alone would make (not the dev tools, not
    torch unless required)."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    todo, seen = list(requirements), set()
    while todo:
        req = Requirement(todo.pop())
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        dist = next(iter(distributions(name=req.name, path=[str(purelib)])), None)
        assert dist is not None and dist.files, f"{req.name} is not installed in {purelib}"
        for top in {f.parts[0] for f in dist.files if f.parts[0] != ".."}:
            if not (dest / top).exists():
                (dest / top).symlink_to(purelib / top)
        todo += dist.requires or ()
    return dest


def without_site(python: str, pythonpath: list[Path], code: str) -> str:
    """stdout of `python -S -c code` on `pythonpath` (-S: none of the venv's site-packages)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(map(str, pythonpath))}
    out = subprocess.run([python, "-S", "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


NO_TORCH = "try:\n    import torch\nexcept ModuleNotFoundError as e:\n    print(e.name)\n"
"""Prints "torch" where torch cannot be imported."""


def test_daemon_serves_the_shipped_policy_without_torch(tmp_path: Path, region_name: str) -> None:
    # The checkout's marllbd (the editable install's finder is a .pth, not read here),
    # its metadata (the policy entry points) and its dependencies.
    path = [REPO, link_site(tmp_path / "site", ["marllbd"])]
    assert without_site(sys.executable, path, NO_TORCH) == "torch\n"
    port = free_port()
    conf = tmp_path / "marllbd.toml"
    conf.write_text(
        f'[backend]\nkind = "sim"\nregion = "{region_name}"\n'
        '[backend.sim]\nscenario = "seed-16"\nspeed = 20.0\n'
        f'[policy]\nname = "sac-gru:{SHIPPED}"\nfallback = "sed"\n'
        f'[metrics]\nport = {port}\n[logging]\nformat = "json"\n'
    )
    log = tmp_path / "daemon.log"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(map(str, path))}
    daemon = subprocess.Popen(
        [sys.executable, "-S", "-m", "marllbd.cli", "run", "--config", str(conf)],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip

    def decided() -> bool:
        assert daemon.poll() is None, log.read_text()  # e.g. it could not load the policy
        return scrape(port)["marllbd_decisions_total"] >= 20

    try:
        wait_for(decided, 60)
        m = scrape(port)
    finally:
        daemon.terminate()  # it removes its simulator's region
        daemon.wait(timeout=20)
    assert m[f'marllbd_policy_info{{fallback="sed",name="sac-gru:{SHIPPED}"}}'] == 1
    # Every decision so far was the learned policy's: none by the fallback.
    assert m["marllbd_fallback_active"] == 0
    assert sum(v for k, v in m.items() if k.startswith("marllbd_fallbacks_total")) == 0, m
    assert '"fallback_entered"' not in log.read_text()
