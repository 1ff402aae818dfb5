"""Gymnasium and PettingZoo environments over the simulator."""

import gymnasium

from marllbd.envs.multi import MultiAgentLoadBalanceEnv
from marllbd.envs.single import LoadBalanceEnv

__all__ = ["LoadBalanceEnv", "MultiAgentLoadBalanceEnv"]

if "marllbd/LoadBalance-v0" not in gymnasium.registry:
    gymnasium.register("marllbd/LoadBalance-v0", entry_point="marllbd.envs.single:LoadBalanceEnv")
    gymnasium.register(
        "marllbd/LoadBalanceDiscrete-v0",
        entry_point="marllbd.envs.single:LoadBalanceEnv",
        kwargs={"action_type": "discrete"},
    )
