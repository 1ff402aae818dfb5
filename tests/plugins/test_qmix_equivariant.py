"""The equivariant QMIX (hyper.arch 'equivariant'): one agent network for any LB node and
server count, permuting the servers permutes its utilities, a monotonic mixer blind to the
order of agents and servers, the numpy serving path matches the torch agent, and training
on a family keeps a replay bucket per layout and reproduces bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from marllbd_rl import qmix  # noqa: E402
from marllbd_rl.replay import EpisodeBuckets  # noqa: E402

from marllbd import checkpoint  # noqa: E402
from marllbd.features import NUM_FEATURES  # noqa: E402
from marllbd.policies import PolicyContext, load  # noqa: E402
from marllbd.policies.learned import (  # noqa: E402
    ServerTokens,
    SetQMIXPolicy,
    capacity_token,
    qmix_policy,
)
from marllbd.sim.family import load_family, scenario_toml  # noqa: E402
from marllbd.sim.scenario import synthetic  # noqa: E402
from marllbd.training import Hooks, TrainConfig, Trainer, TrainingError  # noqa: E402

from .test_sac_gru_equivariant import SMALL_FAMILY  # noqa: E402

HYPER = {
    "arch": "equivariant", "hidden": 16, "mixing_embed": 8, "hypernet_hidden": 8,
    "warmup_steps": 20, "train_every": 4, "batch_size": 4, "seq_len": 5, "burn_in": 2,
}  # fmt: skip


def perturbed(module: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    """Every parameter moved off its initial value, so no test passes on a constant net."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return module


def agent(levels: int = 3) -> qmix.SetAgent:
    torch.manual_seed(0)  # the initial weights: the same whatever ran before
    net = qmix.SetAgent(levels, 16, 5.0)
    rng = np.random.default_rng(1)
    net.norm.update(rng.gamma(1.0, 1.0, (64, 5 * qmix.TOKEN_WIDTH)))
    return perturbed(net)


def tokens(rng: np.random.Generator, *shape: int) -> torch.Tensor:
    x = rng.gamma(1.0, 1.0, (*shape, qmix.TOKEN_WIDTH)).astype(np.float32)
    x[..., -1] = rng.normal(0.0, 0.5, shape)
    return torch.from_numpy(x)


@pytest.mark.parametrize("n", [2, 7, 16, 64])
def test_agent_serves_any_server_count_and_permuting_servers_permutes_q(n: int) -> None:
    net, rng = agent(), np.random.default_rng(n)
    x = tokens(rng, 3, 6, n)  # 3 windows of 6 steps
    perm = torch.from_numpy(rng.permutation(n))
    with torch.no_grad():
        q = net(x)
        q_perm = net(x[:, :, perm])
    assert q.shape == (3, 6, n, 3)
    torch.testing.assert_close(q_perm, q[:, :, perm], rtol=1e-5, atol=1e-5)
    # stepping the GRU one interval at a time gives the window's utilities
    h = torch.zeros(3, n, 16)
    with torch.no_grad():
        for t in range(6):
            q_t, h = net.step(x[:, t], h)
            torch.testing.assert_close(q_t, q[:, t], rtol=1e-5, atol=1e-5)


def test_mixer_is_monotonic_and_blind_to_the_order_of_agents_and_servers() -> None:
    rng = np.random.default_rng(5)
    torch.manual_seed(0)
    mixer = perturbed(qmix.SetMixer(8, 8, 5.0))
    a, n = 4, 6
    state = rng.gamma(1.0, 1.0, (10, a, n, qmix.STATE_WIDTH)).astype(np.float32)
    mixer.norm.update(state.reshape(-1, a * n * qmix.STATE_WIDTH))
    s = torch.from_numpy(state)
    q = torch.from_numpy(rng.normal(size=(10, a)).astype(np.float32)).requires_grad_()
    total = mixer(q, s.flatten(-3))
    (grad,) = torch.autograd.grad(total.sum(), q)
    assert (grad >= 0).all() and (grad > 0).any()
    agents, servers = rng.permutation(a), rng.permutation(n)
    moved = s[:, agents][:, :, servers].flatten(-3)
    torch.testing.assert_close(mixer(q[:, agents], moved), total, rtol=1e-5, atol=1e-5)
    # the same mixer takes another number of agents and servers
    other = torch.from_numpy(rng.gamma(1.0, 1.0, (10, 2 * 3 * qmix.STATE_WIDTH)).astype("f4"))
    assert mixer(q[:, :2], other).shape == (10,)


def feature_stream(hint: str, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames' features and the capacities: random ones, or with hint 'adaptive' LB 0's
    of a drift sample (capacities change mid-run, so adaptive-sed's estimates move)."""
    if hint == "none":
        rng = np.random.default_rng(n)
        caps = rng.choice([1.0, 2.0, 4.0], n)
        return [rng.gamma(1.0, 0.3, (n, NUM_FEATURES)) for _ in range(8)], caps
    from marllbd import features as F
    from marllbd.sim.engine import Engine

    sc = load_family("drift").sample(1)
    engine, caps = Engine(sc), sc.capacities
    stream = []
    while not engine.done:
        stream.append(F.compute(engine.step(copy=True).observations[0], caps))
    return stream, caps


@pytest.mark.parametrize(("n", "hint"), [(3, "none"), (24, "none"), (0, "adaptive")])
def test_numpy_serving_decides_as_the_torch_agent(n: int, hint: str) -> None:
    """SetQMIXPolicy from the agent's arrays: per decision the argmax level of the torch
    agent's utilities on the same tokens (features and capacity token; with hint
    'adaptive' also adaptive-sed's estimate), GRU carried; the weights are the level
    times the configured capacity, or with the hint times the estimate (within the
    continuous action's spread of the capacity)."""
    stream, caps = feature_stream(hint, n)
    n = len(caps)
    width = ServerTokens(hint).width
    torch.manual_seed(0)
    net = qmix.SetAgent(3, 16, 5.0, width)
    net.norm.update(np.random.default_rng(1).gamma(1.0, 1.0, (64, 5 * width)))
    perturbed(net)
    cfg = qmix.QMIXConfig(arch="equivariant", hidden=16, hint=hint)
    dims = qmix.Dims(0, 0, width, 3, qmix.STATE_WIDTH, 16, 8, 8)
    arrays = {f"agent.{k}": v.detach().numpy() for k, v in net.state_dict().items()}
    manifest = qmix.manifest(cfg, dims, None)
    policy, twin = (qmix_policy(arrays, manifest, lb=5) for _ in range(2))
    assert isinstance(policy, SetQMIXPolicy) and policy.name == "qmix"
    for p in (policy, twin):
        p.reset(PolicyContext(num_servers=n, capacities=caps))
    h = torch.zeros(1, n, 16)
    levels = np.array(cfg.levels)
    maker = ServerTokens(hint)
    maker.reset(caps)
    moved, hints = 0, []
    for feats in stream:
        x = maker(feats.astype(np.float32))
        if hint == "none":  # the token is the features and the capacity token
            want = np.concatenate([feats, capacity_token(caps)[:, None]], 1)
            np.testing.assert_allclose(x, want.astype(np.float32))
        with torch.no_grad():
            q, h = net.step(torch.from_numpy(x)[None], h)
        np.testing.assert_allclose(twin.step(feats), q[0].numpy(), rtol=1e-4, atol=1e-5)
        weights = policy.decide(feats, np.ones(n, dtype=bool), None)
        top = np.sort(q[0].numpy(), -1)
        clear = top[:, -1] - top[:, -2] > 1e-3  # float32 rounding cannot flip these argmaxes
        best = q[0].argmax(-1).numpy()
        base = caps if hint == "none" else caps * np.exp(x[:, -1].astype(np.float64))
        want_w = np.clip(levels[best] * base, caps / 3.0, caps * 3.0)
        np.testing.assert_allclose(weights[clear], want_w[clear], rtol=1e-5)
        moved += int((best[clear] != 0).sum())
        hints.append(x[:, -1].copy())
    assert moved > 0  # not every server at the first level: the test can tell them apart
    if hint == "adaptive":
        assert np.ptp(np.array(hints)) > 0.1  # the estimates moved off the capacities


def family_config(tmp_path: Path, **kw: Any) -> TrainConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    family = tmp_path / "small.toml"
    family.write_text(SMALL_FAMILY)
    scenario = tmp_path / "eval.toml"
    scenario.write_text(scenario_toml(synthetic(3, lb_nodes=2, duration=4.0)))
    base: dict[str, Any] = {
        "algo": "qmix", "scenario": str(scenario), "out": tmp_path / "run", "steps": 400,
        "envs": 2, "eval_every": 10_000, "eval_seeds": (7,), "progress": False,
        "family": str(family), "hyper": tuple(kw.pop("hyper", HYPER).items()),
    }  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_family_training_buckets_layouts_and_reproduces_bit_for_bit(tmp_path: Path) -> None:
    trainer = Trainer(family_config(tmp_path / "a"))
    algo = trainer.algorithm
    assert isinstance(algo, qmix.Qmix) and isinstance(algo.buffer, EpisodeBuckets)
    result = trainer.learn()
    layouts = {key[:2] for key in algo.buffer.buckets}  # (LB nodes, servers)
    assert len(layouts) >= 3 and {a for a, _ in layouts} == {1, 2}, layouts
    m = checkpoint.load(result.last, algorithm="qmix").manifest
    assert m["accepts"] == {"num_servers": "any", "lb_nodes": "any"}
    assert m["progress"]["updates"] >= 50
    again = Trainer(family_config(tmp_path / "b")).learn()
    a, b = checkpoint.load(result.last).arrays, checkpoint.load(again.last).arrays
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # every LB node loads the same agent, for any number of servers
    for lb, n in ((0, 2), (3, 9)):
        policy = load(f"qmix:{result.last}", lb=lb)
        policy.reset(PolicyContext(num_servers=n, capacities=np.ones(n)))
        w = policy.decide(np.ones((n, NUM_FEATURES)), np.ones(n, dtype=bool), None)
        assert w.shape == (n,) and np.isfinite(w).all()


def test_buckets_keep_the_newest_episodes_and_sample_one_layout() -> None:
    buckets = EpisodeBuckets(3, seed=0)

    def episode(a: int, n: int, t: int = 6) -> tuple[np.ndarray, ...]:
        return (
            np.full((t + 1, a, n, qmix.TOKEN_WIDTH), float(n), dtype=np.float32),
            np.zeros((t + 1, a * n * qmix.STATE_WIDTH), dtype=np.float32),
            np.zeros((t, a, n), dtype=np.int64),
            np.ones(t, dtype=np.float32),
            np.zeros(t, dtype=np.float32),
        )

    buckets.add(*episode(2, 3))
    buckets.add(*episode(2, 5))
    buckets.add(*episode(2, 5))
    assert len(buckets) == 3
    buckets.add(*episode(4, 7))  # a fourth episode: the oldest bucket (2 x 3) goes
    assert len(buckets) == 3 and {k[:2] for k in buckets.buckets} == {(2, 5), (4, 7)}
    for _ in range(20):
        batch = buckets.sample(4, 1, 3)
        servers = batch.obs.shape[3]
        assert servers in (5, 7) and (batch.obs[batch.obs != 0] == servers).all()


def test_equivariant_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"family: QMIX's flat networks .*arch=equivariant"):
        Trainer(family_config(tmp_path, hyper={}))
    with pytest.raises(TrainingError, match=r"network: a custom mixer needs arch 'flat'"):
        Trainer(family_config(tmp_path), Hooks(network=lambda *a: qmix.Mixer(*a)))
    with pytest.raises(TrainingError, match=r"family: not with Ray rollout workers"):
        Trainer(family_config(tmp_path, workers=2))
    with pytest.raises(ValueError, match=r"qmix.arch: expected one of flat, equivariant"):
        qmix.QMIXConfig(arch="set")
    grouped = tmp_path / "grouped.toml"
    grouped.write_text(scenario_toml(synthetic(4, lb_nodes=2, group_size=2, duration=4.0)))
    with pytest.raises(TrainingError, match=r"arch 'equivariant': .* 2 groups"):
        Trainer(family_config(tmp_path, family=None, scenario=str(grouped)))


def test_hint_adaptive_trains_on_the_estimates(tmp_path: Path) -> None:
    """hint 'adaptive': the rollouts' tokens carry adaptive-sed's estimates, the envs step
    with weights level × estimate, and the checkpoint serves with the same tokens."""
    trainer = Trainer(family_config(tmp_path, hyper={**HYPER, "hint": "adaptive"}))
    algo = trainer.algorithm
    assert isinstance(algo, qmix.Qmix) and algo.dims.features == NUM_FEATURES + 2
    result = trainer.learn()
    e = np.array([[0.0, np.log(0.5), np.log(1.25), np.log(5.0)]], dtype=np.float32)
    tokens = np.zeros((1, 1, 4, NUM_FEATURES + 2), dtype=np.float32)
    tokens[..., -1] = e
    levels = np.array([[[0, 1, 2, 2]]])
    action = algo.env_action(levels, tokens)
    caps = np.array([1.0, 2.0, 4.0, 1.0])
    weights = algo._continuous.weights(action[0, 0], caps)
    want = np.array([1.0, 1.5 * 0.5 * 2.0, 2.0 * 1.25 * 4.0, 3.0])  # the last clipped at 3x
    np.testing.assert_allclose(weights, want, rtol=1e-5)
    m = checkpoint.load(result.last, algorithm="qmix").manifest
    assert m["hyper"]["hint"] == "adaptive" and m["dims"]["features"] == NUM_FEATURES + 2
    policy = load(f"qmix:{result.last}")
    policy.reset(PolicyContext(num_servers=4, capacities=caps))
    assert np.isfinite(policy.decide(np.ones((4, NUM_FEATURES)), np.ones(4, bool), None)).all()
    with pytest.raises(ValueError, match=r"qmix.hint: 'adaptive' needs arch 'equivariant'"):
        qmix.QMIXConfig(hint="adaptive")
