"""The environments' "ansi" rendering: one text table of the servers' state."""

from __future__ import annotations

import numpy as np

from marllbd.sim.engine import Engine

RENDER_MODES = ("ansi",)
"""The render modes both environments accept (besides None, which renders nothing)."""


def check_render_mode(render_mode: str | None) -> str | None:
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(
            f"render_mode: expected None or one of {', '.join(RENDER_MODES)}, got {render_mode!r}"
        )
    return render_mode


def ansi_table(engine: Engine, lbs: range) -> str:
    """The engine's time, then per server: up or down (taking new flows), real capacity
    (workers x speed), and for each LB node in lbs its weight and its active flows (the
    flows it dispatched there that have not finished: in service or backlogged)."""
    head = ["server", "up", "capacity"]
    for lb in lbs:
        head += [f"lb{lb}_weight", f"lb{lb}_active"]
    rows = [head]
    caps, up = engine.capacities, engine.active
    for s in range(engine.num_servers):
        row = [str(s), "yes" if up[s] else "no", f"{caps[s]:g}"]
        for lb in lbs:
            row += [f"{engine.lb_w[lb, s]:.3f}", str(int(engine.lb_active[lb, s]))]
        rows.append(row)
    widths = np.max([[len(c) for c in r] for r in rows], axis=0)
    lines = ["  ".join(c.rjust(int(w)) for c, w in zip(r, widths, strict=True)) for r in rows]
    return f"t = {engine.t:.3f} s\n" + "\n".join(lines) + "\n"
