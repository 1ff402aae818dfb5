"""Gymnasium and PettingZoo environments over the simulator.

The Gymnasium ids' max_episode_steps is the default scenario's (seed-16: 239 steps after
reset(), episode_steps); an env made with another scenario truncates itself at that
scenario's end, so pass max_episode_steps=episode_steps(scenario) to gymnasium.make for a
longer one (docs/api.md).  `gymnasium.make_vec` with either id returns a
LoadBalanceVectorEnv (vectorization_mode "vector_entry_point", the default for them).
"""

import gymnasium

from marllbd.envs.multi import MultiAgentLoadBalanceEnv
from marllbd.envs.multi_vector import MultiAgentVectorEnv
from marllbd.envs.single import LoadBalanceEnv, episode_steps, resolve_scenario
from marllbd.envs.vector import LoadBalanceVectorEnv

__all__ = [
    "LoadBalanceEnv",
    "LoadBalanceVectorEnv",
    "MultiAgentLoadBalanceEnv",
    "MultiAgentVectorEnv",
    "episode_steps",
]

if "marllbd/LoadBalance-v0" not in gymnasium.registry:
    _steps = episode_steps(resolve_scenario(None, None))  # the envs' default scenario
    gymnasium.register(
        "marllbd/LoadBalance-v0",
        entry_point="marllbd.envs.single:LoadBalanceEnv",
        vector_entry_point="marllbd.envs.vector:LoadBalanceVectorEnv",
        max_episode_steps=_steps,
    )
    gymnasium.register(
        "marllbd/LoadBalanceDiscrete-v0",
        entry_point="marllbd.envs.single:LoadBalanceEnv",
        vector_entry_point="marllbd.envs.vector:LoadBalanceVectorEnv",
        kwargs={"action_type": "discrete"},
        max_episode_steps=_steps,
    )
