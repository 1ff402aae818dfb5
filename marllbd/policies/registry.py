"""Find policies by name through the `marllbd.policies` entry-point group.

Each entry point names a factory `(arg: str | None) -> Policy`; a spec is
`name` or `name:ARG` (ARG, e.g. a checkpoint path, goes to the factory).
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points

from marllbd.dataplane.dispatch import DISPATCH_NAMES
from marllbd.policies.interface import Policy, PolicyError

GROUP = "marllbd.policies"


def available() -> list[str]:
    """Names of the installed policies, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load(spec: str, *, lb: int | None = None) -> Policy:
    """A fresh policy for `spec` ("name" or "name:ARG"); PolicyError if that is impossible.

    `lb` is the LB node the policy will run on: a factory that takes an `lb` keyword
    (a multi-agent policy, e.g. QMIX, whose nodes run different agents) gets it; the
    others ignore it.
    """
    name, sep, arg = spec.partition(":")
    eps = entry_points(group=GROUP, name=name)
    targets = sorted({ep.value for ep in eps})
    if not targets:
        raise PolicyError(
            f"unknown policy {spec!r}: expected one of {', '.join(available())} "
            "(optionally followed by :ARG)"
        )
    if len(targets) > 1:
        raise PolicyError(
            f"policy {name!r} is registered more than once ({', '.join(targets)}); "
            "uninstall all but one of the packages providing it"
        )
    try:
        factory = next(iter(eps)).load()
    except (ImportError, AttributeError) as exc:
        raise PolicyError(f"policy {name!r}: cannot load {targets[0]}: {exc}") from exc
    takes_lb = lb is not None and "lb" in inspect.signature(factory).parameters
    policy = factory(arg if sep else None, lb=lb) if takes_lb else factory(arg if sep else None)
    if not isinstance(policy, Policy):
        raise PolicyError(
            f"policy {name!r}: {targets[0]} returned a {type(policy).__name__}, "
            "which lacks the Policy interface (name, dispatch, needs_ground_truth, reset, decide)"
        )
    if policy.dispatch not in DISPATCH_NAMES:
        raise PolicyError(
            f"policy {name!r}: dispatch {policy.dispatch!r} is not a rule; "
            f"expected one of {', '.join(DISPATCH_NAMES)}"
        )
    return policy
