"""Registry: every heuristic is found through the installed entry points; bad specs are named."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from marllbd.policies import DISPATCH_NAMES, Policy, PolicyError, available, load, registry

HEURISTICS = [
    "active-wcmp", "ecmp", "gsq", "lsq", "lsq2", "peak-ewma", "prequal", "sed", "sed2", "wcmp",
]  # fmt: skip


def test_every_heuristic_is_registered() -> None:
    assert set(HEURISTICS) <= set(available())
    assert available() == sorted(available())
    for name in HEURISTICS:
        policy = load(name)
        assert isinstance(policy, Policy)
        assert policy.name == name and policy.dispatch in DISPATCH_NAMES


def test_every_dispatch_rule_has_its_heuristic() -> None:
    """Each rule of the one list is also a policy of that name applying it (sed: SED over
    capacities), so `marllbd eval --policies RULE` works for every rule."""
    for rule in DISPATCH_NAMES:
        assert load(rule).dispatch == rule


def test_each_load_is_a_fresh_object() -> None:
    assert load("sed") is not load("sed")


@pytest.mark.parametrize("spec", ["nope", "", ":x", "SED", "nope:/tmp/ckpt.safetensors"])
def test_unknown_policy_names_the_spec_and_the_choices(spec: str) -> None:
    with pytest.raises(PolicyError) as exc:
        load(spec)
    msg = str(exc.value)
    assert f"unknown policy {spec!r}" in msg
    assert all(name in msg for name in HEURISTICS)


@pytest.mark.parametrize("spec", ["sed:foo", "ecmp:"])
def test_heuristics_take_no_argument(spec: str) -> None:
    with pytest.raises(PolicyError, match="takes no argument"):
        load(spec)


def _fake_group(monkeypatch: pytest.MonkeyPatch, *eps: EntryPoint) -> None:
    def entry_points(*, group: str, name: str | None = None) -> list[EntryPoint]:
        assert group == "marllbd.policies"
        return [ep for ep in eps if name is None or ep.name == name]

    monkeypatch.setattr(registry, "entry_points", entry_points)


def test_a_factory_that_returns_a_non_policy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_group(monkeypatch, EntryPoint("bad", "builtins:str", "marllbd.policies"))
    with pytest.raises(PolicyError, match=r"'bad'.*lacks the Policy interface"):
        load("bad:x")


def test_an_unimportable_entry_point_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_group(monkeypatch, EntryPoint("gone", "marllbd.no_such_module:f", "marllbd.policies"))
    with pytest.raises(PolicyError, match=r"cannot load marllbd\.no_such_module:f"):
        load("gone")


def test_a_name_registered_twice_is_ambiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_group(
        monkeypatch,
        EntryPoint("sed", "marllbd.policies.heuristics:sed", "marllbd.policies"),
        EntryPoint("sed", "other.pkg:sed", "marllbd.policies"),
    )
    with pytest.raises(PolicyError, match="registered more than once"):
        load("sed")
