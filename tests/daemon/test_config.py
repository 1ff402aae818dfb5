"""Config: defaults, the shipped file, and every bad value named by its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from marllbd.daemon.config import REPO_CONFIG, Config, ConfigError, from_dict, load


def test_shipped_config_is_the_defaults_with_the_shipped_policy() -> None:
    shipped = load(REPO_CONFIG)
    assert shipped.metrics.address == "127.0.0.1"  # loopback by default
    assert shipped.backend.kind == "sim"
    assert (shipped.daemon, shipped.backend, shipped.metrics) == (
        Config().daemon,
        Config().backend,
        Config().metrics,
    )
    # The relative checkpoint path resolves beside the config file.
    name, _, path = shipped.policy.name.partition(":")
    assert name == "sac-gru" and Path(path) == REPO_CONFIG.parent / "policies" / "seed-16-sac-gru"
    assert Path(path).is_dir() and shipped.policy.fallback == "sed"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"deamon": {}}, "deamon: unknown key"),
        ({"daemon": {"poll_period": 0.0005}}, r"poll_period: must be 0 .*>= 0.001 .* got 0.0005"),
        ({"daemon": {"poll_period": "fast"}}, "poll_period: must be 0 for a busy poll or a number"),
        ({"daemon": {"stale_after": -1}}, "daemon.stale_after"),
        ({"backend": {"kind": "dpdk"}}, "backend.kind: must be one of sim, vpp"),
        ({"backend": {"region": "../x"}}, "backend.region"),
        ({"backend": {"lb": -1}}, "backend.lb: must be an integer in 0..1023"),
        ({"backend": {"sim": {"speed": 0}}}, "backend.sim.speed"),
        ({"backend": {"sim": {"spawn": "yes"}}}, "backend.sim.spawn: must be true or false"),
        ({"backend": {"sim": {"colour": 1}}}, "backend.sim.colour: unknown key"),
        ({"backend": {"papi": {"enabled": True}}}, "backend.papi: enabled needs vip and servers"),
        ({"backend": {"papi": {"servers": [1]}}}, "backend.papi.servers"),
        ({"backend": {"expected_uids": ["root"]}}, "backend.expected_uids"),
        ({"policy": {"name": ""}}, "policy.name: must be a non-empty string"),
        ({"policy": {"budget": 0}}, "policy.budget"),
        ({"policy": {"capacities": [1, 0]}}, "policy.capacities"),
        ({"metrics": {"port": 70000}}, "metrics.port: must be an integer in 0..65535"),
        ({"metrics": {"port": True}}, "metrics.port"),
        ({"logging": {"level": "loud"}}, "logging.level: must be one of debug, info"),
        ({"logging": {"format": "xml"}}, "logging.format"),
        ({"policy": []}, "policy: must be a table"),
    ],
)
def test_bad_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(data, source="t.toml")


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (0.001, 0.001), (1, 1.0)])
def test_poll_period_is_busy_or_at_least_1ms(value: float, expected: float) -> None:
    assert from_dict({"daemon": {"poll_period": value}}).daemon.poll_period == expected


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")


def test_default_config_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed from a wheel there is no configs/: /etc/marllbd/marllbd.toml, else defaults."""
    from marllbd.daemon import config as cfg

    monkeypatch.setattr(cfg, "REPO_CONFIG", tmp_path / "none.toml")
    monkeypatch.setattr(cfg, "SYSTEM_CONFIG", tmp_path / "etc.toml")
    assert load(None) == Config()
    (tmp_path / "etc.toml").write_text("[metrics]\nport = 9999\n")
    assert load(None).metrics.port == 9999
