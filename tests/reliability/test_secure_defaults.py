"""Secure defaults, each a test: loopback metrics, private regions, refused foreign
regions, no unpickling, no shell."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from marllbd.daemon.config import Config, load
from marllbd.ipc import Region, RegionError
from marllbd.ipc.region import region_path

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / "marllbd").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py"))


def test_metrics_bind_to_loopback_by_default() -> None:
    assert Config().metrics.address == "127.0.0.1"
    assert load(REPO / "configs" / "marllbd.toml").metrics.address == "127.0.0.1"


def test_regions_are_private(region_name: str) -> None:
    Region.create(region_name, 2)
    assert stat.S_IMODE(os.stat(region_path(region_name)).st_mode) == 0o600
    old = os.umask(0)
    try:
        Region.create(region_name, 2, mode=0o660)  # a permissive umask does not widen it
        assert stat.S_IMODE(os.stat(region_path(region_name)).st_mode) == 0o660
    finally:
        os.umask(old)
    with pytest.raises(RegionError, match="mode"):
        Region.create(region_name, 2, mode=0o666)


def test_foreign_regions_are_refused(region_name: str) -> None:
    Region.create(region_name, 2)
    os.chmod(region_path(region_name), 0o622)
    with pytest.raises(RegionError, match="world-writable"):
        Region.attach(region_name)
    os.chmod(region_path(region_name), 0o600)
    with pytest.raises(RegionError, match="owner uid"):
        Region.attach(region_name, allowed_uids=[4242])


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            )
            out.append((name, node))
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_unpickling_and_no_shell(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
            assert not any(
                n.split(".")[0] in ("pickle", "dill", "cloudpickle", "shelve") for n in names
            )
    for name, call in _calls(tree):
        bare = isinstance(call.func, ast.Name)
        assert not (bare and name in ("eval", "exec")), f"{path}:{call.lineno}: {name}()"
        assert name not in ("system", "popen", "getoutput"), f"{path}:{call.lineno}: {name}()"
        if name == "load" and isinstance(call.func, ast.Attribute):
            base = call.func.value
            assert not (isinstance(base, ast.Name) and base.id == "torch"), (
                f"{path}:{call.lineno}: torch.load"
            )
        for kw in call.keywords:
            if kw.arg == "shell":
                assert isinstance(kw.value, ast.Constant) and kw.value.value is False, (
                    f"{path}:{call.lineno}"
                )
