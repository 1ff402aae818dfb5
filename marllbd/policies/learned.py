"""Learned policies served with numpy only: SAC-GRU and QMIX from format-2 checkpoints.

The daemon loads `sac-gru:DIR` or `qmix:DIR#lb=N` through these loaders without
importing torch, gymnasium or the training code.  Each policy is built from
arrays named as the training networks' state (`actor.gru.weight_ih_l0`,
`agent.fc.weight`, ...) plus the manifest, so a trainer builds the very same
policy from its live networks to evaluate them (`from_arrays`), and a
checkpoint's policy is the one that was evaluated.

The forward passes are the training networks' equations written out in float32:
- SAC-GRU (plugins/marllbd_rl/sac_gru.py Actor.step): x = clip((log1p(f) - shift) * scale),
  e = relu(W_enc x + b), one GRU step, raw = W_head h + b; the action is tanh(raw[:n])
  (continuous) or the per-server argmax over the levels (discrete).  shift and scale come
  from the normaliser's count/mean/m2 (float64) as RunningNorm.refresh computes them.
- QMIX (qmix.py AgentNetwork with one GRUCell step): per agent held by the LB, its servers'
  rows normalised like SAC-GRU's (without log1p), its one-hot id appended, relu(fc), one GRU
  step, and L utilities per server row; the greedy level is the per-server argmax.
- The equivariant networks (hyper.arch 'equivariant', any server count): SetSacGruPolicy
  (sac_gru.py SetActor.step) and SetQMIXPolicy (qmix.py SetAgent.step), one per-server
  network whose outputs are a server's action parameters or its levels' utilities.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marllbd import checkpoint
from marllbd.checkpoint import CheckpointError, take
from marllbd.features import NUM_FEATURES
from marllbd.policies.actions import ActionSpec
from marllbd.policies.adaptive import AdaptiveConfig, AdaptiveSed
from marllbd.policies.interface import GroundTruth, PolicyContext, PolicyError

SAC_GRU, QMIX = "sac-gru", "qmix"
_F32 = np.float32


def _f32(a: np.ndarray) -> np.ndarray:
    """A float32 C-contiguous copy: later changes to the source (training) do not leak in."""
    return np.array(a, dtype=_F32, order="C")


NORM_VAR_EPS = 1e-6
"""Added to a normaliser's variance before the inverse square root (marllbd_rl.norm uses it)."""


def norm_shift_scale(
    arrays: Mapping[str, np.ndarray], prefix: str, dim: int, *, where: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """The float32 shift and scale of the saved running normaliser `prefix` (count, mean,
    m2 in float64), as marllbd_rl.norm.RunningNorm.refresh derives them; the identity
    before it has two rows of statistics."""
    count = float(take(arrays, f"{prefix}.count", (), where=where))
    mean = np.asarray(take(arrays, f"{prefix}.mean", (dim,), where=where), dtype=np.float64)
    m2 = np.asarray(take(arrays, f"{prefix}.m2", (dim,), where=where), dtype=np.float64)
    if count < 2.0:
        return np.zeros(dim, _F32), np.ones(dim, _F32)
    return mean.astype(_F32), (1.0 / np.sqrt(m2 / count + NORM_VAR_EPS)).astype(_F32)


class _Gru:
    """torch's GRU cell (gates r, z, n in that order) in float32, on x (..., I) and h
    (..., H): h' = (1 - z) * n + z * h.  The weights are laid out once, at load, for
    the fewest passes per decision: the r and z gates' input and hidden products land in
    one contiguous (..., 2H) block, pre-negated with their two biases summed, so the
    sigmoid is 1 / (1 + exp(block)); the n gate's two products stay apart (r scales the
    hidden one)."""

    def __init__(
        self, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray
    ) -> None:
        k = w_hh.shape[1]
        self._k = k
        self._i_rz = np.ascontiguousarray(-w_ih[: 2 * k].T)
        self._h_rz = np.ascontiguousarray(-w_hh[: 2 * k].T)
        self._b_rz = -(b_ih[: 2 * k] + b_hh[: 2 * k])
        self._i_n, self._b_in = np.ascontiguousarray(w_ih[2 * k :].T), b_ih[2 * k :]
        self._h_n, self._b_hn = np.ascontiguousarray(w_hh[2 * k :].T), b_hh[2 * k :]

    def __call__(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        """The next hidden state (a new array: h is not written)."""
        k = self._k
        rz = x @ self._i_rz
        rz += h @ self._h_rz
        rz += self._b_rz
        np.exp(rz, out=rz)
        rz += 1.0
        np.reciprocal(rz, out=rz)  # sigmoid of the gates' pre-activations
        hn = h @ self._h_n
        hn += self._b_hn
        hn *= rz[..., :k]
        n = x @ self._i_n
        n += self._b_in
        n += hn
        np.tanh(n, out=n)
        out = h - n
        out *= rz[..., k:]
        out += n
        return out


def _compile_action(action: ActionSpec, num_servers: int) -> None:
    """Compile (or load from numba's cache) the action kernel for what `decide` passes it
    (float32 tanh outputs, int64 level indices) while the policy loads: in the first
    decision it takes ~0.2 s, past the daemon's budget, and the fallback then decides
    until the policy is retried."""
    n = num_servers
    action.weights(np.zeros(n, _F32 if action.kind == "continuous" else np.int64), np.ones(n))


def _places(where: Path | None) -> tuple[str | Path, str | Path]:
    """What errors name: a checkpoint directory's two files, or the caller's live networks."""
    if where is None:
        return "the manifest of the live networks", "the live networks"
    return where / checkpoint.MANIFEST, where / checkpoint.WEIGHTS


def _manifest_field(manifest: Mapping[str, Any], where: str | Path, *keys: str) -> Any:
    value: Any = manifest
    for i, key in enumerate(keys):
        if not isinstance(value, Mapping) or key not in value:
            raise CheckpointError(f"{where}: manifest key {'.'.join(keys[: i + 1])!r}: missing")
        value = value[key]
    return value


def _positive(where: str | Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise CheckpointError(f"{where}: {key}: expected a number > 0, got {value!r}")
    return float(value)


def _dim(where: str | Path, dims: Mapping[str, Any], key: str) -> int:
    value = dims.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckpointError(f"{where}: dims.{key}: expected an integer >= 0, got {value!r}")
    return value


def _action(where: str | Path, manifest: Mapping[str, Any]) -> ActionSpec:
    table = _manifest_field(manifest, where, "action")
    try:
        return ActionSpec.from_dict(table)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: action: {exc!r}") from None


# -- SAC-GRU --------------------------------------------------------------------------------


def _sac_action_clip(
    at: str | Path, manifest: Mapping[str, Any], num_levels: int
) -> tuple[ActionSpec, float]:
    """A SAC-GRU manifest's action (checked against dims.num_levels) and feature clip."""
    action = _action(at, manifest)
    want_k = len(action.levels) if action.kind == "discrete" else 0
    if num_levels != want_k:
        raise CheckpointError(
            f"{at}: dims.num_levels: expected {want_k} for a {action.kind} action, got {num_levels}"
        )
    clip = _positive(
        at, "hyper.feature_clip", _manifest_field(manifest, at, "hyper", "feature_clip")
    )
    return action, clip


class _Recurrent:
    """What both served networks share: a GRU state `_h` that `decide` rebinds (never
    writes into), so `warm` can run a decision and put the state back."""

    _h: np.ndarray

    def decide(
        self, features: np.ndarray, active: np.ndarray, truth: GroundTruth | None
    ) -> np.ndarray:
        raise NotImplementedError

    def warm(self, features: np.ndarray, active: np.ndarray) -> np.ndarray:
        """`decide` with the GRU state put back afterwards: the same work, no trace."""
        h = self._h
        try:
            return self.decide(features, active, None)
        finally:
            self._h = h


class SacGruPolicy(_Recurrent):
    """The trained SAC-GRU actor as a Policy: features → deterministic action → SED weights.

    Keeps its GRU state across `decide` calls and zeroes it in `reset`.  A decision is
    a dozen small float32 array operations.
    """

    name = SAC_GRU
    dispatch = "sed"
    needs_ground_truth = False
    bounded = True
    """A dozen fixed-size array operations: the daemon may call it on its loop."""

    def __init__(
        self,
        layers: Mapping[str, np.ndarray],
        *,
        num_servers: int,
        num_levels: int,
        clip: float,
        action: ActionSpec,
    ) -> None:
        """`layers`: enc_w, enc_b, w_ih, w_hh, b_ih, b_hh, head_w, head_b, shift, scale
        (float32, shapes checked by `from_arrays`, which is how to build one)."""
        self.num_servers, self._n, self._k = num_servers, num_servers, num_levels
        self._spec, self._clip = action, clip
        self._enc_w, self._enc_b = layers["enc_w"], layers["enc_b"]
        self._gru = _Gru(layers["w_ih"], layers["w_hh"], layers["b_ih"], layers["b_hh"])
        self._head_w, self._head_b = layers["head_w"], layers["head_b"]
        self._shift, self._scale = layers["shift"], layers["scale"]
        self._x = np.zeros(num_servers * NUM_FEATURES, dtype=_F32)
        self._h = np.zeros(self._enc_b.shape[0], dtype=_F32)
        self._capacities: np.ndarray | None = None
        _compile_action(action, num_servers)

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        manifest: Mapping[str, Any],
        *,
        where: Path | None = None,
    ) -> SacGruPolicy:
        """From checkpoint-named arrays ("actor.*", "norm.count/mean/m2") and the manifest's
        dims (obs_dim, num_servers, hidden, num_levels), action and hyper.feature_clip.
        CheckpointError names what does not fit, in the checkpoint directory `where` if
        the arrays come from one."""
        at, arrays_at = _places(where)
        dims = _manifest_field(manifest, at, "dims")
        n, d, hid = (_dim(at, dims, k) for k in ("num_servers", "obs_dim", "hidden"))
        k = _dim(at, dims, "num_levels")
        if n < 1 or hid < 1 or d != n * NUM_FEATURES:
            raise CheckpointError(
                f"{at}: dims: expected num_servers >= 1, hidden >= 1 and obs_dim = "
                f"num_servers * {NUM_FEATURES}, got {dict(dims)}"
            )
        action, clip = _sac_action_clip(at, manifest, k)

        def get(name: str, *shape: int) -> np.ndarray:
            return take(arrays, name, shape, where=arrays_at)

        shift, scale = norm_shift_scale(arrays, "norm", d, where=arrays_at)
        layers = {
            "enc_w": _f32(get("actor.encode.weight", hid, d)),
            "enc_b": _f32(get("actor.encode.bias", hid)),
            "w_ih": _f32(get("actor.gru.weight_ih_l0", 3 * hid, hid)),
            "w_hh": _f32(get("actor.gru.weight_hh_l0", 3 * hid, hid)),
            "b_ih": _f32(get("actor.gru.bias_ih_l0", 3 * hid)),
            "b_hh": _f32(get("actor.gru.bias_hh_l0", 3 * hid)),
            "head_w": _f32(get("actor.head.weight", n * (k or 2), hid)),
            "head_b": _f32(get("actor.head.bias", n * (k or 2))),
            "shift": shift,
            "scale": scale,
        }
        return cls(layers, num_servers=n, num_levels=k, clip=clip, action=action)

    def reset(self, ctx: PolicyContext) -> None:
        if ctx.num_servers != self.num_servers:
            raise PolicyError(
                f"sac-gru policy: trained for {self.num_servers} servers, "
                f"the data plane has {ctx.num_servers}"
            )
        self._capacities = np.asarray(ctx.capacities, dtype=np.float64).copy()
        self._h = np.zeros_like(self._h)

    def step(self, features: np.ndarray) -> np.ndarray:
        """Advance the GRU state on one (num_servers, 12) feature matrix; the head's output."""
        x = self._x
        x[...] = features.reshape(-1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN: refused later
            np.log1p(x, out=x)
            x -= self._shift
            x *= self._scale
            np.clip(x, -self._clip, self._clip, out=x)
            e = self._enc_w @ x + self._enc_b
            np.maximum(e, 0.0, out=e)
            self._h = self._gru(e, self._h)
            return self._head_w @ self._h + self._head_b

    def decide(
        self, features: np.ndarray, active: np.ndarray, truth: GroundTruth | None
    ) -> np.ndarray:
        if self._capacities is None:
            raise PolicyError("sac-gru policy: call reset(ctx) before decide()")
        expected = (self.num_servers, NUM_FEATURES)
        if features.shape != expected:
            raise PolicyError(f"features: expected shape {expected}, got {features.shape}")
        raw = self.step(features)
        level = raw.reshape(self._n, self._k).argmax(-1) if self._k else np.tanh(raw[: self._n])
        return self._spec.weights(level, self._capacities)


def capacity_token(capacities: np.ndarray) -> np.ndarray:
    """Each server's capacity token for the equivariant networks: the log of its configured
    capacity over the cluster's mean (float32), which does not change when every capacity
    scales or the servers are renumbered."""
    caps = np.asarray(capacities, dtype=np.float64)
    return np.log(caps / caps.mean()).astype(_F32)


class ServerTokens:
    """What the equivariant SAC-GRU reads of one LB's servers each interval, raw (the
    network standardises the features): per server its 12 features, its capacity token
    and, with hint 'adaptive', the log of its capacity as adaptive-sed estimates it from
    the features so far over its configured capacity.  Stateful (the estimator's window):
    `reset` at the start of every run; training keeps one per rollout env."""

    def __init__(self, hint: str = "none") -> None:
        self.hint = hint
        self.width = NUM_FEATURES + 1 + (hint == "adaptive")
        self._estimator = AdaptiveSed() if hint == "adaptive" else None
        self._caps = np.ones(0)
        self._token = np.zeros(0, dtype=_F32)

    def reset(self, capacities: np.ndarray) -> None:
        self._caps = np.asarray(capacities, dtype=np.float64).copy()
        self._token = capacity_token(self._caps)
        if self._estimator is not None:
            self._estimator.reset(PolicyContext(num_servers=len(self._caps), capacities=self._caps))

    def __call__(self, features: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """The (n, width) float32 tokens of one interval's (n, 12) features."""
        n = features.shape[0]
        out = np.empty((n, self.width), dtype=_F32)
        out[:, :NUM_FEATURES] = features
        out[:, NUM_FEATURES] = self._token
        if self._estimator is not None:
            on = np.ones(n, dtype=bool) if active is None else active
            self._estimator.observe(np.asarray(features, dtype=np.float64), on)
            out[:, NUM_FEATURES + 1] = np.log(self._estimator.capacities / self._caps)
        return out


RESIDUALS = ("static", "adaptive", "gated")
"""What a zero action of the equivariant SAC-GRU serves: static SED (weights = configured
capacities) or, with hint 'adaptive', adaptive-sed (weights = its capacity estimates);
'gated' is 'adaptive' whose action only moves a server's weight as far as the estimate
has moved off the configured capacity (on_estimate): where adaptive-sed sees nothing,
static SED exactly."""
GATE = AdaptiveConfig().threshold
"""residual 'gated': the |log(estimate / configured capacity)| at which the action acts in
full (adaptive-sed's own evidence threshold); below it, in proportion."""


def _hint(at: str | Path, hyper: Any) -> str:
    """A manifest's hyper.hint ('none' for a checkpoint from before the option)."""
    hint = hyper.get("hint", "none") if isinstance(hyper, Mapping) else "none"
    if hint not in ("none", "adaptive"):
        raise CheckpointError(f"{at}: hyper.hint: expected 'none' or 'adaptive', got {hint!r}")
    return str(hint)


def residual_error(residual: str, hint: str, discrete: bool, base: str) -> str | None:
    """Why `residual` does not go with the other settings, or None (for the trainer's
    config and the served checkpoint alike)."""
    if residual not in RESIDUALS:
        return f"expected one of {', '.join(RESIDUALS)}, got {residual!r}"
    if residual != "static" and (hint != "adaptive" or discrete or base != "capacity"):
        return (
            f"{residual!r} needs hint 'adaptive', continuous actions and weight_base "
            f"'capacity' (got hint {hint!r}, {'discrete' if discrete else 'continuous'} "
            f"actions, base {base!r})"
        )
    return None


def on_estimate(
    action: np.ndarray, tokens: np.ndarray, spec: ActionSpec, residual: str = "adaptive"
) -> np.ndarray:
    """residual 'adaptive' / 'gated': the env action (continuous, capacity base) whose
    weights are spec.spread ** action × adaptive-sed's capacity estimate, the tokens' last
    column being e = log(estimate / configured capacity): action + e / log(spread),
    clipped to [-1, 1] (weights stay within spread× the configured capacity).  'gated'
    scales the action by min(|e| / GATE, 1) first.  Shapes (..., n) and (..., n, W)."""
    e = tokens[..., NUM_FEATURES + 1]
    if residual == "gated":
        action = action * np.minimum(np.abs(e) / GATE, 1.0).astype(action.dtype)
    shifted = action + e / np.log(spec.spread)
    return np.clip(shifted, -1.0, 1.0).astype(action.dtype, copy=False)


def level_exponents(spec: ActionSpec) -> np.ndarray:
    """The continuous action of each of spec's discrete levels: log(level) / log(spread),
    whose weight spread ** a × base is level × base (QMIX's levels on the estimates)."""
    return (np.log(np.asarray(spec.levels)) / np.log(spec.spread)).astype(_F32)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


class _Pooled:
    """relu(W [z, z̄] + b) per server row of z (n, H), z̄ the mean row, as sac_gru.with_mean
    followed by a linear layer: W split into its own-row and mean-row halves, so the mean
    row's half is one (1, H) product instead of n (half the multiply-adds, no concatenation).
    """

    def __init__(self, w: np.ndarray, b: np.ndarray) -> None:
        h = w.shape[1] // 2
        self._own = np.ascontiguousarray(w[:, :h].T)
        self._pool = np.ascontiguousarray(w[:, h:].T)
        self._b = b

    def __call__(self, z: np.ndarray) -> np.ndarray:
        out = z @ self._own
        pooled = z.sum(0)
        pooled /= z.shape[0]  # the mean row (numpy's mean: the same sum, then the division)
        pooled = pooled @ self._pool
        pooled += self._b
        out += pooled
        return _relu(out)


def set_layers(
    arrays: Mapping[str, np.ndarray],
    net: str,
    norm: str,
    sizes: tuple[int, int, int],
    recurrent: bool,
    where: str | Path,
) -> dict[str, np.ndarray]:
    """The float32 layers of a per-server network (sac_gru.ServerTrunk and a server head,
    the arrays `net`.trunk.* and `net`.head.*, the feature statistics `norm`.*) for
    SetSacGruPolicy, shapes checked: sizes = (token width, hidden, outputs per server)."""
    tok, hid, out = sizes

    def get(name: str, *shape: int) -> np.ndarray:
        return _f32(take(arrays, f"{net}.{name}", shape, where=where))

    shift, scale = norm_shift_scale(arrays, norm, NUM_FEATURES, where=where)
    layers = {
        "enc_w": get("trunk.encode.weight", hid, tok),
        "enc_b": get("trunk.encode.bias", hid),
        "mix_w": get("trunk.mix.weight", hid, 2 * hid),
        "mix_b": get("trunk.mix.bias", hid),
        "h1_w": get("head.0.weight", hid, 2 * hid),
        "h1_b": get("head.0.bias", hid),
        "h2_w": get("head.2.weight", out, hid),
        "h2_b": get("head.2.bias", out),
        "shift": shift,
        "scale": scale,
    }
    if recurrent:
        layers |= {
            "w_ih": get("trunk.gru.weight_ih_l0", 3 * hid, hid),
            "w_hh": get("trunk.gru.weight_hh_l0", 3 * hid, hid),
            "b_ih": get("trunk.gru.bias_ih_l0", 3 * hid),
            "b_hh": get("trunk.gru.bias_hh_l0", 3 * hid),
        }
    return layers


class SetSacGruPolicy(_Recurrent):
    """The equivariant SAC-GRU actor (hyper.arch 'equivariant') as a Policy, for any number
    of servers: plugins/marllbd_rl/sac_gru.py SetActor.step in float32.

    Per server, a token: its 12 features (log1p, standardised with the shared statistics,
    clipped) and its capacity token; e = relu(W_enc t + b); u = relu(W_mix [e, ē] + b)
    (ē the mean over servers); h = GRU(u, h) per server (or u without recurrence); the
    head relu(W_1 [h, h̄] + b) → W_2 · + b gives the server's action parameters.  Permuting
    the servers permutes the weights.
    """

    name = SAC_GRU
    dispatch = "sed"
    needs_ground_truth = False
    bounded = True
    """A dozen array operations over (n, H) matrices: the daemon may call it on its loop."""

    def __init__(
        self,
        layers: Mapping[str, np.ndarray],
        *,
        num_levels: int,
        clip: float,
        action: ActionSpec,
        hint: str = "none",
        residual: str = "static",
    ) -> None:
        """`layers`: enc_w/b, mix_w/b, (w_ih, w_hh, b_ih, b_hh: absent without recurrence),
        h1_w/b, h2_w/b, shift, scale (float32; `from_arrays` checks their shapes)."""
        self._k, self._spec, self._clip = num_levels, action, clip
        self._residual = residual
        self._last = np.zeros((0, NUM_FEATURES + 2), dtype=_F32)
        self._layers = dict(layers)
        gates = ("w_ih", "w_hh", "b_ih", "b_hh")
        self._gru = _Gru(*(layers[k] for k in gates)) if "w_ih" in layers else None
        self._mix = _Pooled(layers["mix_w"], layers["mix_b"])
        self._head = _Pooled(layers["h1_w"], layers["h1_b"])
        self.hidden = int(layers["enc_b"].shape[0])
        self.num_servers = 0
        """The server count of the last reset (any count works)."""
        self._h = np.zeros((0, self.hidden), dtype=_F32)
        self._capacities: np.ndarray | None = None
        self._tokens = ServerTokens(hint)
        _compile_action(action, 2)

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        manifest: Mapping[str, Any],
        *,
        where: Path | None = None,
    ) -> SetSacGruPolicy:
        """From checkpoint-named arrays ("actor.trunk.*", "actor.head.*", "norm.*") and the
        manifest's dims (token_dim, hidden, num_levels), hyper (recurrence, feature_clip)
        and action; CheckpointError names what does not fit."""
        at, arrays_at = _places(where)
        dims = _manifest_field(manifest, at, "dims")
        tok, hid, k = (_dim(at, dims, key) for key in ("token_dim", "hidden", "num_levels"))
        hyper = _manifest_field(manifest, at, "hyper")
        hint = _hint(at, hyper)
        want_tok = ServerTokens(hint).width
        if tok != want_tok or hid < 1:
            raise CheckpointError(
                f"{at}: dims: expected token_dim = {want_tok} (hint {hint!r}) and hidden >= 1, "
                f"got {dict(dims)}"
            )
        action, clip = _sac_action_clip(at, manifest, k)
        residual = hyper.get("residual", "static") if isinstance(hyper, Mapping) else "static"
        problem = residual_error(residual, hint, bool(k), action.base)
        if problem is not None:
            raise CheckpointError(f"{at}: hyper.residual: {problem}")
        recurrence = _manifest_field(manifest, at, "hyper", "recurrence")
        if recurrence not in ("server", "none"):
            raise CheckpointError(
                f"{at}: hyper.recurrence: expected 'server' or 'none', got {recurrence!r}"
            )

        layers = set_layers(
            arrays, "actor", "norm", (tok, hid, k or 2), recurrence == "server", arrays_at
        )
        return cls(layers, num_levels=k, clip=clip, action=action, hint=hint, residual=residual)

    def reset(self, ctx: PolicyContext) -> None:
        self.num_servers = ctx.num_servers
        self._capacities = np.asarray(ctx.capacities, dtype=np.float64).copy()
        self._tokens.reset(self._capacities)
        self._h = np.zeros((ctx.num_servers, self.hidden), dtype=_F32)

    def step(self, features: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """Advance the per-server GRU states (and the hint's estimator) on one (n, 12)
        feature matrix; the head's output (n, K or 2)."""
        ly = self._layers
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN: refused later
            tokens = self._last = self._tokens(features, active)
            x = tokens[:, :NUM_FEATURES]
            np.log1p(x, out=x)
            x -= ly["shift"]
            x *= ly["scale"]
            np.clip(x, -self._clip, self._clip, out=x)
            e = _relu(tokens @ ly["enc_w"].T + ly["enc_b"])
            u = self._mix(e)
            self._h = u if self._gru is None else self._gru(u, self._h)
            z = self._head(self._h)
            return z @ ly["h2_w"].T + ly["h2_b"]

    def warm(self, features: np.ndarray, active: np.ndarray) -> np.ndarray:
        """`decide` with the GRU states and the hint's estimator put back afterwards."""
        tokens = copy.deepcopy(self._tokens)
        try:
            return super().warm(features, active)
        finally:
            self._tokens = tokens

    def decide(
        self, features: np.ndarray, active: np.ndarray, truth: GroundTruth | None
    ) -> np.ndarray:
        if self._capacities is None:
            raise PolicyError("sac-gru policy: call reset(ctx) before decide()")
        expected = (self.num_servers, NUM_FEATURES)
        if features.shape != expected:
            raise PolicyError(f"features: expected shape {expected}, got {features.shape}")
        return self._weights(self.step(features, active), self._capacities)

    def _weights(self, raw: np.ndarray, capacities: np.ndarray) -> np.ndarray:
        """The weights of the head's output (n, K or 2) for the last tokens."""
        level = raw.argmax(-1) if self._k else np.tanh(raw[:, 0])
        if self._residual != "static":
            level = on_estimate(level, self._last, self._spec, self._residual)
        return self._spec.weights(level, capacities)


def _equivariant(manifest: Mapping[str, Any], where: Path | None) -> bool:
    """Whether hyper.arch is 'equivariant' (else 'flat'; a checkpoint from before the
    option is flat); CheckpointError for another value."""
    hyper = _manifest_field(manifest, _places(where)[0], "hyper")
    arch = hyper.get("arch", "flat") if isinstance(hyper, Mapping) else "flat"
    if arch not in ("flat", "equivariant"):
        raise CheckpointError(
            f"{_places(where)[0]}: hyper.arch: expected 'flat' or 'equivariant', got {arch!r}"
        )
    return bool(arch == "equivariant")


SERVED_RULES = ("sed", "prequal-w")
"""The rules a learned policy's weights may be for (hyper.dispatch): SED's capacities, or
prequal-w's multipliers of Prequal's scores (with weight_base 'uniform', so a zero action
is Prequal)."""


def served_dispatch(manifest: Mapping[str, Any], where: str | Path) -> str:
    """hyper.dispatch (a checkpoint from before the option: 'sed'); CheckpointError for a
    rule not in SERVED_RULES, or prequal-w with weights based on the capacities."""
    hyper = manifest.get("hyper")
    rule = hyper.get("dispatch", "sed") if isinstance(hyper, Mapping) else "sed"
    if rule not in SERVED_RULES:
        raise CheckpointError(
            f"{where}: hyper.dispatch: expected one of {', '.join(SERVED_RULES)}, got {rule!r}"
        )
    base = manifest.get("action", {}).get("base") if isinstance(manifest, Mapping) else None
    if rule == "prequal-w" and base != "uniform":
        raise CheckpointError(
            f"{where}: hyper.dispatch: 'prequal-w' needs action.base 'uniform', got {base!r}"
        )
    return str(rule)


def sac_gru_policy(
    arrays: Mapping[str, np.ndarray], manifest: Mapping[str, Any], *, where: Path | None = None
) -> SacGruPolicy | SetSacGruPolicy:
    """The served actor of SAC-GRU arrays: flat or equivariant as hyper.arch says (a
    checkpoint from before the option is flat), for the rule hyper.dispatch names."""
    rule = served_dispatch(manifest, _places(where)[0])
    cls = SetSacGruPolicy if _equivariant(manifest, where) else SacGruPolicy
    policy = cls.from_arrays(arrays, manifest, where=where)
    policy.dispatch = rule
    return policy


def sac_gru_from_checkpoint(path: str | Path) -> SacGruPolicy | SetSacGruPolicy:
    """The served SAC-GRU policy of a checkpoint directory; CheckpointError if it is unusable."""
    ckpt = checkpoint.load(path, algorithm=SAC_GRU)
    return sac_gru_policy(ckpt.arrays, ckpt.manifest, where=ckpt.path)


def load_sac_gru(arg: str | None) -> SacGruPolicy | SetSacGruPolicy:
    """Entry point `sac-gru:<checkpoint directory>`; PolicyError says what is wrong."""
    if not arg:
        raise PolicyError(
            "sac-gru: expected a checkpoint directory, e.g. sac-gru:runs/sac-gru/checkpoints/best"
        )
    try:
        return sac_gru_from_checkpoint(arg)
    except CheckpointError as exc:
        raise PolicyError(f"sac-gru: {exc}") from None


# -- QMIX -----------------------------------------------------------------------------------


def _qmix_action_clip(
    at: str | Path, manifest: Mapping[str, Any], levels: int
) -> tuple[ActionSpec, float]:
    """A QMIX manifest's action (discrete, checked against dims.levels) and feature clip."""
    action = _action(at, manifest)
    if action.kind != "discrete" or len(action.levels) != levels:
        raise CheckpointError(
            f"{at}: action: expected {levels} discrete levels (dims.levels), "
            f"got a {action.kind} action with levels {list(action.levels)}"
        )
    clip = _positive(at, "hyper.norm_clip", _manifest_field(manifest, at, "hyper", "norm_clip"))
    return action, clip


@dataclass(frozen=True)
class Layout:
    """Which LB each QMIX agent belongs to and which servers it weighs (from the environment)."""

    agents: tuple[str, ...]
    lbs: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]
    """Server indices of each agent, in its observation's row order."""
    num_servers: int

    @staticmethod
    def of(env: Any) -> Layout:
        """The layout of a MultiAgentLoadBalanceEnv (or of its vector envs, which share
        its possible_agents, members, groups and num_servers)."""
        return Layout(
            agents=tuple(env.possible_agents),
            lbs=tuple(lb for lb, _ in env.members),
            groups=tuple(tuple(int(i) for i in env.groups[g]) for _, g in env.members),
            num_servers=env.num_servers,
        )

    def head_mask(self, rows: int) -> np.ndarray:
        mask = np.zeros((len(self.agents), rows), dtype=np.float32)
        for a, group in enumerate(self.groups):
            mask[a, : len(group)] = 1.0
        return mask

    def to_dict(self) -> dict[str, Any]:
        return {
            "agents": list(self.agents),
            "lbs": list(self.lbs),
            "groups": [list(g) for g in self.groups],
            "num_servers": self.num_servers,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Layout:
        return Layout(
            agents=tuple(data["agents"]),
            lbs=tuple(int(x) for x in data["lbs"]),
            groups=tuple(tuple(int(i) for i in g) for g in data["groups"]),
            num_servers=int(data["num_servers"]),
        )


class QMIXPolicy(_Recurrent):
    """One LB's QMIX agents as a `Policy`: that LB's (n, F) features → its n weights.

    Each agent reads the rows of its own servers (`server_indices`) and sets
    their levels by the per-server argmax of its utilities; hidden states are
    kept per agent across decide() calls and zeroed by reset().  Inactive
    servers get weights like any other (the SED data path skips them).
    """

    name = QMIX
    dispatch = "sed"
    needs_ground_truth = False
    bounded = True
    """A few fixed-size array operations per agent: the daemon may call it on its loop."""

    def __init__(
        self,
        layers: Mapping[str, np.ndarray],
        layout: Layout,
        lb: int,
        *,
        rows: int,
        clip: float,
        action: ActionSpec,
    ) -> None:
        """`layers`: shift, scale, fc_w, fc_b, w_ih, w_hh, b_ih, b_hh, head_w, head_b
        (float32, shapes checked by `from_arrays`, which is how to build one)."""
        held = [a for a, owner in enumerate(layout.lbs) if owner == lb]
        if not held:
            raise PolicyError(
                f"lb: no agent of this checkpoint runs on LB {lb}; "
                f"its LBs are {sorted(set(layout.lbs))}"
            )
        self.layout, self.lb, self.action = layout, lb, action
        self.agents = tuple(layout.agents[a] for a in held)
        self.server_indices = tuple(np.array(layout.groups[a], dtype=np.int64) for a in held)
        covered = np.concatenate(self.server_indices)
        if sorted(covered.tolist()) != list(range(layout.num_servers)):
            raise PolicyError(
                f"lb {lb}: its agents weigh servers {sorted(covered.tolist())}, "
                f"not all {layout.num_servers}"
            )
        if max(len(g) for g in self.server_indices) > rows:
            raise PolicyError(f"lb {lb}: an agent weighs more servers than the network's {rows}")
        self._agent_row = np.concatenate(
            [np.full(len(g), j) for j, g in enumerate(self.server_indices)]
        )
        self._head_row = np.concatenate([np.arange(len(g)) for g in self.server_indices])
        self._servers = covered
        self._shift, self._scale, self._clip = layers["shift"], layers["scale"], clip
        self._fc_w, self._fc_b = layers["fc_w"], layers["fc_b"]
        self._gru = _Gru(layers["w_ih"], layers["w_hh"], layers["b_ih"], layers["b_hh"])
        self._head_w, self._head_b = layers["head_w"], layers["head_b"]
        self.num_features = int(self._shift.shape[0])
        levels = self._head_b.shape[0] // rows
        a_held = len(held)
        self._obs = np.zeros((a_held, rows, self.num_features), dtype=_F32)
        self._x = np.zeros((a_held, rows * self.num_features + len(layout.agents)), dtype=_F32)
        self._x[:, rows * self.num_features :] = np.eye(len(layout.agents), dtype=_F32)[held]
        self._q_shape = (a_held, rows, levels)
        self._h = np.zeros((a_held, self._fc_b.shape[0]), dtype=_F32)
        self._base: np.ndarray | None = None
        self._level_idx = np.zeros(layout.num_servers, dtype=np.int64)
        _compile_action(action, layout.num_servers)

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        manifest: Mapping[str, Any],
        lb: int = 0,
        *,
        where: Path | None = None,
    ) -> QMIXPolicy:
        """LB `lb`'s agents from checkpoint-named arrays ("agent.*") and the manifest's dims
        (n_agents, rows, features, levels, hidden), layout, action and hyper.norm_clip.
        CheckpointError names what does not fit (in the checkpoint directory `where` if
        the arrays come from one); PolicyError if LB `lb` has no agents."""
        at, arrays_at = _places(where)
        dims = _manifest_field(manifest, at, "dims")
        a, rows, f, lv, hid = (
            _dim(at, dims, k) for k in ("n_agents", "rows", "features", "levels", "hidden")
        )
        if min(a, rows, f, lv, hid) < 1:
            raise CheckpointError(f"{at}: dims: expected positive QMIX sizes, got {dict(dims)}")
        layout_data = _manifest_field(manifest, at, "layout")
        try:
            layout = Layout.from_dict(layout_data)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{at}: manifest lacks QMIX fields (layout: {exc!r})") from None
        if len(layout.agents) != a or len(layout.lbs) != a or len(layout.groups) != a:
            raise CheckpointError(
                f"{at}: layout: expected {a} agents (dims.n_agents), got {len(layout.agents)}"
            )
        action, clip = _qmix_action_clip(at, manifest, lv)

        def get(name: str, *shape: int) -> np.ndarray:
            return _f32(take(arrays, name, shape, where=arrays_at))

        shift, scale = norm_shift_scale(arrays, "agent.norm", f, where=arrays_at)
        layers = {
            "shift": shift,
            "scale": scale,
            "fc_w": get("agent.fc.weight", hid, rows * f + a),
            "fc_b": get("agent.fc.bias", hid),
            "w_ih": get("agent.gru.weight_ih", 3 * hid, hid),
            "w_hh": get("agent.gru.weight_hh", 3 * hid, hid),
            "b_ih": get("agent.gru.bias_ih", 3 * hid),
            "b_hh": get("agent.gru.bias_hh", 3 * hid),
            "head_w": get("agent.head.weight", rows * lv, hid),
            "head_b": get("agent.head.bias", rows * lv),
        }
        return cls(layers, layout, lb, rows=rows, clip=clip, action=action)

    def reset(self, ctx: PolicyContext) -> None:
        if ctx.num_servers != self.layout.num_servers:
            raise PolicyError(
                f"qmix policy: trained for {self.layout.num_servers} servers, "
                f"the data plane has {ctx.num_servers}"
            )
        self._base = np.asarray(ctx.capacities, dtype=np.float64).copy()
        self._h = np.zeros_like(self._h)

    def utilities(self, features: np.ndarray) -> np.ndarray:
        """Advance the agents' GRU states on the LB's features; q (agents, rows, levels)."""
        obs = self._obs
        obs[self._agent_row, self._head_row] = features[self._servers]
        cut = obs.shape[1] * obs.shape[2]
        x = self._x
        norm = x[:, :cut].reshape(obs.shape)  # a view: the one-hot ids stay in place
        np.subtract(obs, self._shift, out=norm)
        norm *= self._scale
        np.clip(norm, -self._clip, self._clip, out=norm)
        e = x @ self._fc_w.T + self._fc_b
        np.maximum(e, 0.0, out=e)
        self._h = self._gru(e, self._h)
        return (self._h @ self._head_w.T + self._head_b).reshape(self._q_shape)

    def decide(
        self, features: np.ndarray, active: np.ndarray, truth: GroundTruth | None
    ) -> np.ndarray:
        if self._base is None:
            raise PolicyError("policy 'qmix': call reset(ctx) before decide()")
        if features.shape != (self.layout.num_servers, self.num_features):
            raise PolicyError(
                f"features: expected shape ({self.layout.num_servers}, "
                f"{self.num_features}), got {features.shape}"
            )
        with np.errstate(invalid="ignore", over="ignore"):  # NaN weights are refused later
            best = self.utilities(features).argmax(-1)
        self._level_idx[self._servers] = best[self._agent_row, self._head_row]
        return self.action.weights(self._level_idx, self._base)


class SetQMIXPolicy(SetSacGruPolicy):
    """The equivariant QMIX agent (hyper.arch 'equivariant', plugins/marllbd_rl/qmix.py
    SetAgent) as a Policy for any LB node and any number of servers: the equivariant
    SAC-GRU's per-server network (tokens: features and capacity token; trunk; head), its
    outputs each server's utilities of the weight levels, whose argmax is the level.
    Every node runs the same agent on its own features."""

    name = QMIX

    def __init__(self, layers: Mapping[str, np.ndarray], *, hint: str, **kw: Any) -> None:
        super().__init__(layers, hint=hint, **kw)
        self._on_estimates = hint == "adaptive"
        spec = self._spec
        self._continuous = dataclasses.replace(spec, kind="continuous")
        self._exponents = level_exponents(spec)

    def _weights(self, raw: np.ndarray, capacities: np.ndarray) -> np.ndarray:
        """Each server's best level × its configured capacity, or with hint 'adaptive'
        × adaptive-sed's estimate of it: the continuous action log(level) / log(spread)
        moved onto the estimates (on_estimate) and clipped there."""
        best = raw.argmax(-1)
        if not self._on_estimates:
            return self._spec.weights(best, capacities)
        action = on_estimate(self._exponents[best], self._last, self._continuous)
        return self._continuous.weights(action, capacities)

    @classmethod
    def from_qmix(
        cls,
        arrays: Mapping[str, np.ndarray],
        manifest: Mapping[str, Any],
        *,
        where: Path | None = None,
    ) -> SetQMIXPolicy:
        """From checkpoint-named arrays ("agent.trunk.*", "agent.head.*", "agent.norm.*")
        and the manifest's dims (features: the token width, levels, hidden), action and
        hyper.norm_clip; CheckpointError names what does not fit."""
        at, arrays_at = _places(where)
        dims = _manifest_field(manifest, at, "dims")
        tok, lv, hid = (_dim(at, dims, k) for k in ("features", "levels", "hidden"))
        hyper = _manifest_field(manifest, at, "hyper")
        hint = _hint(at, hyper)
        want = ServerTokens(hint).width
        if tok != want or min(lv, hid) < 1:
            raise CheckpointError(
                f"{at}: dims: expected features = {want} (a token per server, hint {hint!r}) "
                f"and positive levels and hidden, got {dict(dims)}"
            )
        action, clip = _qmix_action_clip(at, manifest, lv)
        layers = set_layers(arrays, "agent", "agent.norm", (tok, hid, lv), True, arrays_at)
        return cls(layers, num_levels=lv, clip=clip, action=action, hint=hint)


def qmix_policy(
    arrays: Mapping[str, np.ndarray],
    manifest: Mapping[str, Any],
    lb: int = 0,
    *,
    where: Path | None = None,
) -> QMIXPolicy | SetQMIXPolicy:
    """LB `lb`'s served QMIX agents: flat or equivariant as hyper.arch says (a checkpoint
    from before the option is flat; the equivariant agent is every node's)."""
    if _equivariant(manifest, where):
        return SetQMIXPolicy.from_qmix(arrays, manifest, where=where)
    return QMIXPolicy.from_arrays(arrays, manifest, lb, where=where)


def qmix_from_checkpoint(path: str | Path, lb: int = 0) -> QMIXPolicy | SetQMIXPolicy:
    """LB `lb`'s served QMIX agents of a checkpoint; CheckpointError if it is unusable."""
    ckpt = checkpoint.load(path, algorithm=QMIX)
    return qmix_policy(ckpt.arrays, ckpt.manifest, lb, where=ckpt.path)


def load_qmix(arg: str | None, lb: int | None = None) -> QMIXPolicy | SetQMIXPolicy:
    """Entry point `qmix`: "CHECKPOINT_DIR#lb=N" runs LB N's agents; "CHECKPOINT_DIR" those of
    the node it runs on (`lb`, which evaluation passes per node), else LB 0's."""
    if not arg:
        raise PolicyError(
            "qmix: give a checkpoint directory, e.g. qmix:runs/qmix/checkpoints/best#lb=0"
        )
    path, _, option = arg.partition("#")
    lb = 0 if lb is None else lb
    if option:
        key, _, value = option.partition("=")
        if key != "lb" or not value.isdigit():
            raise PolicyError(
                f"qmix: after '#' expected lb=N (the LB whose agents to run), got {option!r}"
            )
        lb = int(value)
    try:
        return qmix_from_checkpoint(path, lb)
    except CheckpointError as exc:
        raise PolicyError(f"qmix: {exc}") from None
