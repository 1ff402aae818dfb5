"""Distributed rollouts, evaluations and sweeps on Ray (the `distributed` extra).

    marllbd eval  --ray [ADDRESS] ...   every (scenario, policy, seed) run a Ray task
    marllbd train --ray [ADDRESS] --workers N ...   N rollout actors, one learner
    marllbd sweep --algo sac-gru --space ... [--ray ADDRESS]   Ray Tune with ASHA

Importing this package does not import Ray: `cluster.connect` does, and names the
extra to install when it is missing.  Nothing else of marllbd imports this package,
so without the extra nothing imports Ray.  docs/distributed.md is the guide.
"""

from __future__ import annotations

from marllbd.distributed.cluster import DistributedError, RayExecutor, connect

__all__ = ["DistributedError", "RayExecutor", "connect"]
