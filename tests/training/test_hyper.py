"""Hyperparameter parsing: CLI strings and values become the field's type; errors name the key."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from marllbd.training import TrainingError, hyper


@dataclass(frozen=True)
class Example:
    lr: float = 1e-3
    hidden: int = 64
    levels: tuple[float, ...] = (1.0, 1.5)
    kind: str = "continuous"
    prior: float | None = None
    fused: bool = False

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"hyper.hidden: expected an integer >= 1, got {self.hidden}")


def parse(**pairs: object) -> Example:
    return hyper.parse(Example, pairs.items(), algorithm="example")


def test_cli_strings_become_the_annotated_types() -> None:
    got = parse(lr="3e-4", hidden="32", levels="1,1.5,2", kind="discrete", prior="none",
                fused="true")  # fmt: skip
    assert got == Example(3e-4, 32, (1.0, 1.5, 2.0), "discrete", None, True)
    assert parse(prior="0.5").prior == 0.5


def test_python_values_pass_through_converted() -> None:
    got = parse(lr=1, hidden=16, levels=[1, 2], prior=None)
    assert got.lr == 1.0 and isinstance(got.lr, float) and got.levels == (1.0, 2.0)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", "abc", r"hyper\.lr: expected a number, got 'abc'"),
        ("hidden", "2.5", r"hyper\.hidden: expected an integer, got '2\.5'"),
        ("hidden", 2.5, r"hyper\.hidden: expected an integer, got 2\.5"),
        ("levels", "1,x", r"hyper\.levels: expected a comma-separated list of numbers, got '1,x'"),
        ("fused", "maybe", r"hyper\.fused: expected true/false, got 'maybe'"),
        ("lr", None, r"hyper\.lr: expected a number, got None"),
        ("hidden", True, r"hyper\.hidden: expected an integer, got True"),
    ],
)
def test_bad_values_name_the_key_and_the_type(key: str, value: object, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        parse(**{key: value})


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(TrainingError, match=r"hyper\.hiden: unknown example hyperparameter; "
                       r"valid: lr, hidden, levels, kind, prior, fused"):  # fmt: skip
        parse(hiden=3)


def test_the_class_checks_still_apply() -> None:
    with pytest.raises(TrainingError, match=r"hyper\.hidden: expected an integer >= 1, got 0"):
        parse(hidden="0")
