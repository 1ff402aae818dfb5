"""Learned load-balancing policies for marllbd (SAC-GRU, QMIX): the only code that imports torch.

Installed with the `rl` extra.  By role:
- sac_gru.py, qmix.py: one algorithm each (SAC-GRU's rollouts step one
  marllbd.envs.LoadBalanceVectorEnv) (hyperparameters, networks, loss,
  update, and the `Algorithm` the training loop in marllbd.training drives);
- replay.py: the recurrent replays (sequence windows, episode windows);
- norm.py: the one running input normaliser; torchio.py: torch state ↔
  checkpoint arrays;
- agents.py: the original description's per-transition APIs
  (`SAC_GRU_Agent`, `QMIXAgent`, also importable from this package).

Serving needs none of this: marllbd.policies.learned runs checkpoints in numpy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QMIXAgent", "SAC_GRU_Agent"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from marllbd_rl import agents

        return getattr(agents, name)
    raise AttributeError(f"module 'marllbd_rl' has no attribute {name!r}")
