"""Policies: the interface, the entry-point registry and (in heuristics) the built-ins."""

from marllbd.dataplane.dispatch import DISPATCH_NAMES, ORACLE_RULES
from marllbd.policies.interface import (
    GroundTruth,
    Policy,
    PolicyContext,
    PolicyError,
    is_bounded,
    warm_call,
    weights_within_ratio,
)
from marllbd.policies.registry import available, load

__all__ = [
    "DISPATCH_NAMES",
    "ORACLE_RULES",
    "GroundTruth",
    "Policy",
    "PolicyContext",
    "PolicyError",
    "available",
    "is_bounded",
    "load",
    "warm_call",
    "weights_within_ratio",
]
