"""The equivariant SAC-GRU (hyper.arch 'equivariant'): one checkpoint for any server count,
permuting the servers permutes its weights, it starts as static SED, the numpy serving
path matches the torch actor, and every parameter learns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from marllbd_rl import sac_gru as S  # noqa: E402
from marllbd_rl.replay import SequenceReplay  # noqa: E402

from marllbd import checkpoint  # noqa: E402
from marllbd.features import NUM_FEATURES  # noqa: E402
from marllbd.policies import PolicyContext, load  # noqa: E402
from marllbd.policies.learned import (  # noqa: E402
    GATE,
    ServerTokens,
    SetSacGruPolicy,
    capacity_token,
    on_estimate,
    sac_gru_policy,
)
from marllbd.sim.family import load_family, scenario_toml  # noqa: E402
from marllbd.sim.scenario import synthetic  # noqa: E402
from marllbd.training import TrainConfig, Trainer, TrainingError, evaluate  # noqa: E402
from tests.plugins.test_sac_gru import assert_updates_thread_invariant  # noqa: E402

SMALL = {"hidden": 16, "burn_in": 3, "seq_len": 5, "batch_size": 8, "arch": "equivariant"}
TOKEN = NUM_FEATURES + 1


def learner(action_type: str = "continuous", n: int = 5, **hyper: Any) -> S.Learner:
    cfg = S.SacGruConfig(action_type=action_type, **{**SMALL, **hyper})
    agent = S.Learner(cfg, n * cfg.token_dim, n, seed=0)
    agent.norm.update(np.random.default_rng(1).gamma(1.0, 1.0, (16, n * cfg.token_dim)))
    return agent


def trained_like(agent: S.Learner) -> S.Learner:
    """Perturb every parameter so the test does not pass on the near-constant initial head."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in agent.actor.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return agent


def served(agent: S.Learner) -> SetSacGruPolicy:
    policy = sac_gru_policy(agent.arrays(), S.manifest(agent.cfg, agent.obs_dim, agent.n))
    assert isinstance(policy, SetSacGruPolicy)
    return policy


def run_policy(policy: SetSacGruPolicy, feats: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """The weights of `steps` consecutive decisions (the GRU state carried)."""
    n = caps.shape[0]
    policy.reset(PolicyContext(num_servers=n, capacities=caps))
    return np.stack([policy.decide(f, np.ones(n, bool), None) for f in feats])


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
@pytest.mark.parametrize("recurrence", ["server", "none"])
def test_permuting_the_servers_permutes_the_weights(action_type: str, recurrence: str) -> None:
    policy = served(trained_like(learner(action_type, recurrence=recurrence)))
    rng = np.random.default_rng(0)
    for n in (2, 5, 13, 40):
        feats = rng.gamma(1.0, 0.2, (6, n, NUM_FEATURES))
        caps = rng.integers(1, 6, n).astype(float)
        base = run_policy(policy, feats, caps)
        for _ in range(3):
            perm = rng.permutation(n)
            moved = run_policy(policy, feats[:, perm], caps[perm])
            np.testing.assert_allclose(moved, base[:, perm], rtol=1e-5)
        if action_type == "continuous":  # the test can fail: the weights differ by server
            assert np.ptp(base[-1] / caps) > 1e-3


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
def test_numpy_serving_matches_the_torch_actor_step_by_step(action_type: str) -> None:
    agent = trained_like(learner(action_type, n=7))
    policy = served(agent)
    rng = np.random.default_rng(4)
    caps = rng.integers(1, 5, 7).astype(float)
    policy.reset(PolicyContext(num_servers=7, capacities=caps))
    tok = np.broadcast_to(capacity_token(caps)[:, None], (7, 1))
    h = agent.initial_state(1)[0]
    for _ in range(5):
        f = rng.gamma(1.0, 0.2, (7, NUM_FEATURES)).astype(np.float32)
        a, h = agent.act(np.concatenate([f, tok], 1).reshape(1, -1), h, deterministic=True)
        raw = policy.step(f)
        if action_type == "continuous":
            np.testing.assert_allclose(np.tanh(raw[:, 0]), a[0], atol=2e-6)
        else:
            np.testing.assert_array_equal(raw.argmax(-1), a[0])


def test_window_forward_matches_the_stepped_actor() -> None:
    agent = trained_like(learner(n=4))
    x = agent.norm(torch.as_tensor(np.random.default_rng(5).gamma(1.0, 1.0, (3, 6, 4 * TOKEN))))
    x = x.float()
    with torch.no_grad():
        seq, _ = agent.actor(x, None)
        h = agent.initial_state(3)[0]
        for t in range(6):
            out, h = agent.actor.step(x[:, t], h)
            torch.testing.assert_close(out, seq[:, t], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
def test_the_untrained_policy_is_static_sed_on_any_server_count(action_type: str) -> None:
    policy = served(learner(action_type))
    rng = np.random.default_rng(2)
    for n in (2, 9, 64):
        caps = rng.integers(1, 8, n).astype(float)
        w = run_policy(policy, rng.gamma(1.0, 0.2, (3, n, NUM_FEATURES)), caps)
        np.testing.assert_array_equal(w, np.tile(caps, (3, 1)))  # exactly, ties included


def test_critic_q_is_invariant_to_a_permutation_of_the_servers() -> None:
    agent = learner(n=6)
    x = agent.norm(torch.as_tensor(np.random.default_rng(6).gamma(1.0, 1.0, (2, 4, 6 * TOKEN))))
    a = torch.rand(2, 4, 6) * 2 - 1
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        q = agent.critic1.q(agent.critic1.features(x.float()), a)
        qp = agent.critic1.q(agent.critic1.features(x.float()[:, :, perm]), a[..., perm])
    torch.testing.assert_close(q, qp, rtol=1e-5, atol=1e-6)


def random_replay(action_type: str, window: int) -> SequenceReplay:
    """Random transitions of 3 servers' tokens, 2 streams of 30 steps."""
    replay = SequenceReplay(2, 100, 3 * TOKEN, 3, window, seed=0)
    rng = np.random.default_rng(0)
    for s in range(2):
        replay.start(s, rng.gamma(1.0, 1.0, 3 * TOKEN))
        for _ in range(30):
            a = rng.uniform(-1, 1, 3) if action_type == "continuous" else rng.integers(0, 3, 3)
            replay.add(s, a.astype(float), float(rng.random()), False, rng.gamma(1, 1, 3 * TOKEN))
    return replay


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
def test_two_update_threads_give_the_one_thread_update_bit_for_bit(
    action_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = learner(action_type, n=3, update_threads=1)
    two = learner(action_type, n=3, update_threads=2)
    replay = random_replay(action_type, one.cfg.window)
    batches = [replay.sample(8, one.cfg.burn_in, action_type == "discrete") for _ in range(3)]
    assert_updates_thread_invariant(one, two, batches, monkeypatch)


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
def test_two_updates_reach_every_parameter(action_type: str) -> None:
    """The actor's output layer starts at zero: the first update moves it, the second the
    layers before it."""
    agent = learner(action_type, n=3)
    cfg = agent.cfg
    replay = random_replay(action_type, cfg.window)
    before = {k: v.copy() for k, v in agent.arrays().items()}
    for _ in range(2):
        agent.update(replay.sample(cfg.batch_size, cfg.burn_in, bool(cfg.num_levels)))
    after = agent.arrays()
    for name, module in (("actor", agent.actor), ("critic1", agent.critic1)):
        for pname, _ in module.named_parameters():
            key = f"{name}.{pname}"
            assert not np.array_equal(before[key], after[key]), f"{key} did not move"


def test_bad_architecture_settings_are_named() -> None:
    with pytest.raises(ValueError, match=r"hyper\.arch: .*'graph'"):
        S.SacGruConfig(arch="graph")
    with pytest.raises(ValueError, match=r"hyper\.recurrence"):
        S.SacGruConfig(recurrence="none")
    with pytest.raises(ValueError, match=r"hyper\.critic_trunk: arch 'equivariant'"):
        S.SacGruConfig(arch="equivariant", critic_trunk="shared")
    with pytest.raises(ValueError, match=r"hyper\.residual: expected .*'learned'"):
        S.SacGruConfig(arch="equivariant", hint="adaptive", residual="learned")
    for residual in ("adaptive", "gated"):
        for bad in ({}, {"hint": "adaptive", "action_type": "discrete"}):
            with pytest.raises(ValueError, match=rf"hyper\.residual: '{residual}' needs hint"):
                S.SacGruConfig(arch="equivariant", residual=residual, **bad)


def test_a_checkpoint_whose_residual_does_not_fit_is_refused() -> None:
    """The served checkpoint checks hyper.residual by the trainer's own rule."""
    agent = learner(n=4, hint="adaptive", residual="gated")
    arrays, manifest = agent.arrays(), S.manifest(agent.cfg, agent.obs_dim, agent.n)
    assert isinstance(sac_gru_policy(arrays, manifest), SetSacGruPolicy)
    wrong = (
        ({"residual": "learned"}, {}, r"expected one of static, adaptive, gated, got 'learned'"),
        ({}, {"base": "uniform"}, r"'gated' needs .* base 'uniform'"),
    )
    for hyper, action, match in wrong:
        bad = {
            **manifest,
            "hyper": {**manifest["hyper"], **hyper},
            "action": {**manifest["action"], **action},
        }
        with pytest.raises(checkpoint.CheckpointError, match=rf"hyper\.residual: {match}"):
            sac_gru_policy(arrays, bad)


def test_the_gated_residual_is_static_sed_where_the_estimate_has_not_moved() -> None:
    """residual 'gated' with a network that acts (random output weights): a server whose
    estimate is its configured capacity gets exactly static SED's weight; on a drift
    sample the servers whose estimates moved get the network's residual on top."""
    from marllbd import features as F
    from marllbd.sim.engine import Engine

    sc = load_family("drift").sample(3)
    n, caps, on = len(sc.servers), sc.capacities, np.ones(len(sc.servers), bool)
    gated = served(trained_like(learner(n=n, hint="adaptive", residual="gated")))
    gated.reset(PolicyContext(num_servers=n, capacities=caps))
    engine, weights, still, acted = Engine(sc), caps.copy(), 0, 0
    while not engine.done:
        feats = F.compute(engine.step(copy=True).observations[0], weights)
        weights = gated.decide(feats, on, None)
        e = gated._last[:, -1]  # log(estimate / configured capacity)
        static, ratio = e == 0.0, weights / caps
        if static.sum() >= 2:  # the unmoved servers keep their configured ratios
            np.testing.assert_allclose(ratio[static], ratio[static][0], rtol=1e-6)
            still += 1
        moved = np.abs(e) >= GATE
        if moved.any():  # a moved server is not at its estimate alone: the network acts
            zero = np.zeros(n, np.float32)
            alone = gated._spec.weights(on_estimate(zero, gated._last, gated._spec), caps)
            acted += not np.allclose(weights[moved] / alone[moved], 1.0, rtol=1e-3)
    assert still > 50 and acted > 10


def test_one_checkpoint_runs_on_2_7_16_24_and_64_servers(tmp_path: Path) -> None:
    scenario = tmp_path / "five.toml"
    scenario.write_text(scenario_toml(synthetic(5, duration=6.0)))
    cfg = TrainConfig(
        algo="sac-gru", scenario=str(scenario), out=tmp_path / "run", steps=120, envs=2,
        eval_every=10_000, eval_seeds=(7,), progress=False,
        hyper=tuple({**SMALL, "learning_starts": 20, "updates_per_step": 0.5}.items()),
    )  # fmt: skip
    last = Trainer(cfg).learn().last
    m = checkpoint.load(last, algorithm="sac-gru").manifest
    assert m["accepts"] == {"num_servers": "any"} and m["dims"]["num_servers"] == 0
    assert m["progress"]["updates"] > 0
    spec = f"sac-gru:{last}"
    for n in (2, 7, 16, 24, 64):
        result = evaluate.run(synthetic(n, duration=2.0), spec, seed=1)
        assert result.flows > 0 and np.isfinite(result.mean_fct)
    policy = load(spec)
    policy.reset(PolicyContext(num_servers=3, capacities=np.array([1.0, 2.0, 4.0])))
    w = policy.decide(np.ones((3, NUM_FEATURES)), np.ones(3, bool), None)
    assert w.shape == (3,) and np.isfinite(w).all()


SMALL_FAMILY = """\
description = "2-6 servers, short runs, one capacity drift"
duration = 4.0
control_interval = 0.25
lb_nodes = {choice = [1, 2]}

[servers]
count = {range = [2, 6]}
workers = {range = [1, 4]}

[trace]
kind = "poisson"
load = {range = [0.5, 0.8]}
work = "exp"
mean_work = 0.05

[faults.drift]
events = 1
servers = 1
workers = {range = [1, 4]}
at = {range = [0.2, 0.8]}
"""


FAMILY_HYPER = {**SMALL, "learning_starts": 20, "updates_per_step": 0.25, "family_groups": 2}


def family_config(tmp_path: Path, **kw: Any) -> TrainConfig:
    family = tmp_path / "small.toml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    family.write_text(SMALL_FAMILY)
    scenario = tmp_path / "eval.toml"
    scenario.write_text(scenario_toml(synthetic(3, duration=4.0)))
    base: dict[str, Any] = {
        "algo": "sac-gru", "scenario": str(scenario), "out": tmp_path / "run", "steps": 400,
        "envs": 4, "eval_every": 10_000, "eval_seeds": (7,), "progress": False,
        "family": str(family), "hyper": tuple(kw.pop("hyper", FAMILY_HYPER).items()),
    }  # fmt: skip
    return TrainConfig(**{**base, **kw})


def recorded_draws(algo: S.SacGru) -> list[Any]:
    """The family samples `algo` draws from now on, in order."""
    samples: list[Any] = []
    draw = algo._draw

    def spy() -> Any:
        samples.append(draw())
        return samples[-1]

    algo._draw = spy  # type: ignore[method-assign]
    return samples


def test_family_training_draws_samples_of_several_server_counts(tmp_path: Path) -> None:
    trainer = Trainer(family_config(tmp_path))
    algo = trainer.algorithm
    assert isinstance(algo, S.SacGru)
    samples = recorded_draws(algo)
    result = trainer.learn()
    assert all(sc.lb_nodes == 1 for sc in samples)  # samples with two LB nodes: drawn again
    drawn = [sc.name for sc in samples]
    # 400 steps of 4 envs in 2 groups: 100 steps of each group, 16-step episodes, so each
    # group ran 6 episodes, each on a fresh sample after the first
    assert len(drawn) >= 10 and len(set(drawn)) >= 8
    counts = {n for n, r in algo.replays.items() if r.rows.any()}
    assert len(counts) >= 3, counts
    assert all(r.rows.sum() <= 400 + 4 * 26 for r in algo.replays.values())
    m = checkpoint.load(result.last, algorithm="sac-gru").manifest
    assert m["progress"]["updates"] >= 80 and m["accepts"] == {"num_servers": "any"}
    again = Trainer(family_config(tmp_path / "again")).learn()
    a = checkpoint.load(result.last).arrays
    b = checkpoint.load(again.last).arrays
    for key in a:  # a fixed seed reproduces a family run bit for bit
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def train_lb_nodes(tmp_path: Path, lb_nodes: str, **hyper: str) -> tuple[S.SacGru, Any]:
    """402 steps on the small family with hyper lb_nodes (and `hyper`); it drew samples of
    1 and 2 nodes."""
    config = family_config(
        tmp_path, steps=402, hyper={**FAMILY_HYPER, "lb_nodes": lb_nodes, **hyper}
    )
    trainer = Trainer(config)
    algo = trainer.algorithm
    assert isinstance(algo, S.SacGru)
    samples = recorded_draws(algo)
    result = trainer.learn()
    assert {sc.lb_nodes for sc in samples} == {1, 2}
    return algo, result


def test_lb_nodes_any_trains_lb_0_of_samples_with_several_nodes(tmp_path: Path) -> None:
    """hyper lb_nodes 'any': samples with two LB nodes are kept (LB 0 learns, the other
    node keeps static weights); a step budget that ends inside a round of the groups
    (402 = 100 rounds of 4 envs and 2 steps) stops cleanly there."""
    _, result = train_lb_nodes(tmp_path, "any")
    m = checkpoint.load(result.last, algorithm="sac-gru").manifest
    assert m["progress"]["steps"] == 402 and m["hyper"]["lb_nodes"] == "any"
    with pytest.raises(ValueError, match=r"hyper.lb_nodes: expected one of one, any, all"):
        S.SacGruConfig(lb_nodes="every")


def test_lb_nodes_all_trains_every_node_of_samples_with_several_nodes(tmp_path: Path) -> None:
    """hyper lb_nodes 'all' (self-play): each LB node of a two-node sample is a replay
    stream of its own, written at every step as the one-node samples' streams are, and
    a step is one node's transition."""
    algo, result = train_lb_nodes(tmp_path, "all")
    assert algo.streams == 4 * S.MAX_LB_NODES
    two = [g for g in algo.groups if g.scenario.lb_nodes == 2]
    for g in two:  # the groups' current samples: 2 envs x 2 nodes in consecutive streams
        assert g.count == 4
        rows = algo.replays[len(g.scenario.servers)].rows[g.first : g.first + 4]
        assert rows[0] == rows[1] > 0 and rows[2] == rows[3] > 0
    m = checkpoint.load(result.last, algorithm="sac-gru").manifest
    assert m["progress"]["steps"] == 402 and m["hyper"]["lb_nodes"] == "all"


def test_every_node_rows_are_each_nodes_own_frames_and_weights() -> None:
    """EveryNode: row 2e + k is LB k of env e, its observation that node's features and
    its action that node's weights; the team reward on both rows; a masked row restarts
    its env's two nodes."""
    from marllbd.envs.multi_vector import MultiAgentVectorEnv

    sc = synthetic(4, lb_nodes=2, duration=2.0)
    multi = MultiAgentVectorEnv(3, sc, action_type="continuous")
    rows = S.EveryNode(multi)
    assert rows.num_envs == 6
    obs, _ = rows.reset(seed=[1, 2, 3])
    twin = MultiAgentVectorEnv(3, sc, action_type="continuous")
    np.testing.assert_array_equal(obs, twin.reset(seed=[1, 2, 3])[0].reshape(6, 4, -1))
    actions = np.zeros((6, 4), dtype=np.float32)
    actions[0::2] = 1.0  # node 0 of every env triples the weights, node 1 keeps them
    obs, reward, _, _, info = rows.step(actions)
    expect = twin.step(actions.reshape(3, 2, 4))
    np.testing.assert_array_equal(obs, expect[0].reshape(6, 4, -1))
    np.testing.assert_array_equal(reward, np.repeat(expect[1], 2))
    np.testing.assert_array_equal(info["fct_mean"], expect[4]["fct_mean"].reshape(-1))
    caps = sc.capacities
    for e in range(3):
        np.testing.assert_allclose(multi.engines[e].lb_w[0], 3.0 * caps)
        np.testing.assert_allclose(multi.engines[e].lb_w[1], caps)
    mask = np.array([False, False, False, True, False, False])
    np.testing.assert_array_equal(rows.whole(mask), [False, False, True, True, False, False])


def test_family_training_needs_the_equivariant_networks(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"family: .*arch=equivariant"):
        Trainer(family_config(tmp_path, hyper={**SMALL, "arch": "flat"}))
    with pytest.raises(TrainingError, match=r"family: QMIX"):
        Trainer(family_config(tmp_path, algo="qmix", hyper={}))
    with pytest.raises(TrainingError, match=r"family: "):
        Trainer(family_config(tmp_path, family=str(tmp_path / "missing.toml")))


@pytest.mark.parametrize("residual", ["static", "adaptive", "gated"])
def test_the_capacity_hint_is_adaptive_seds_estimate_and_serving_matches_torch(
    residual: str,
) -> None:
    """hint 'adaptive': the token's last column is log(adaptive-sed's capacity estimate /
    configured capacity) after the same features; the numpy policy still matches the
    torch actor (with residual 'adaptive', its actions on the estimates), and `warm`
    leaves the estimator as it was."""
    from marllbd import features as F
    from marllbd.policies.adaptive import AdaptiveSed
    from marllbd.sim.engine import Engine

    sc = load_family("drift").sample(1)  # capacities change mid-run
    n = len(sc.servers)
    agent = trained_like(learner(n=n, hint="adaptive", residual=residual))
    assert agent.cfg.token_dim == NUM_FEATURES + 2
    spec = agent.cfg.action_spec()
    policy = served(agent)
    caps = sc.capacities
    policy.reset(PolicyContext(num_servers=n, capacities=caps))
    reference = AdaptiveSed()
    reference.reset(PolicyContext(num_servers=n, capacities=caps))
    tokens = ServerTokens("adaptive")
    tokens.reset(caps)
    engine = Engine(sc)
    h = agent.initial_state(1)[0]
    weights = caps.copy()
    hints = []
    on = np.ones(n, bool)
    while not engine.done:
        obs = engine.step(copy=True).observations[0]
        feats = F.compute(obs, weights)
        reference.decide(feats, on, None)
        row = tokens(feats.astype(np.float32))
        np.testing.assert_allclose(row[:, -1], np.log(reference.capacities / caps), atol=1e-6)
        hints.append(row[:, -1].copy())
        policy.warm(feats, on)  # no trace: the next decide matches torch
        a, h = agent.act(row.reshape(1, -1), h, deterministic=True)
        weights = policy.decide(feats, on, None)
        env = a[0] if residual == "static" else on_estimate(a[0], row, spec, residual)
        np.testing.assert_allclose(weights, spec.weights(env, caps), rtol=1e-5)
    assert np.ptp(np.array(hints)) > 0.0  # the estimate moved: the column is not constant


def test_the_untrained_policy_on_the_estimates_is_adaptive_sed() -> None:
    """residual 'adaptive' with zero output weights serves adaptive-sed's capacity
    estimates (clipped to within the action spread of the configured capacities), on a
    drift sample where they move away from the configured capacities."""
    from marllbd import features as F
    from marllbd.policies.adaptive import AdaptiveSed
    from marllbd.sim.engine import Engine

    sc = load_family("drift").sample(3)
    n, caps, on = len(sc.servers), sc.capacities, np.ones(len(sc.servers), bool)
    policy = served(learner(n=n, hint="adaptive", residual="adaptive"))
    policy.reset(PolicyContext(num_servers=n, capacities=caps))
    reference = AdaptiveSed()
    reference.reset(PolicyContext(num_servers=n, capacities=caps))
    engine, weights, moved, inside = Engine(sc), caps.copy(), 0.0, 0
    while not engine.done:
        feats = F.compute(engine.step(copy=True).observations[0], weights)
        want = reference.decide(feats, on, None)
        weights = policy.decide(feats, on, None)
        ratio = reference.capacities / caps
        np.testing.assert_allclose(weights, caps * np.clip(ratio, 1 / 3, 3), rtol=1e-5)
        if np.all((ratio > 1 / 3) & (ratio < 3)):  # nothing clipped: adaptive-sed's weights
            np.testing.assert_allclose(weights / weights.sum(), want / want.sum(), rtol=1e-5)
            inside += 1
        moved = max(moved, float(np.abs(np.log(ratio)).max()))
    assert moved > 0.5 and inside > 100  # the estimates left the configured capacities


def test_predict_carries_the_gru_states_and_the_hint_between_calls(tmp_path: Path) -> None:
    cfg = family_config(tmp_path, family=None, hyper={**SMALL, "hint": "adaptive"})
    algo = Trainer(cfg).algorithm
    obs = np.random.default_rng(0).gamma(1.0, 0.1, (3, NUM_FEATURES))
    a1, state = algo.predict(obs)
    a2, state2 = algo.predict(obs, state)
    assert a1.shape == a2.shape == (3,) and np.isfinite(a2).all()
    h, tokens = state2
    assert h.shape == (1, 3, 16) and len(tokens) == 1 and tokens[0].width == NUM_FEATURES + 2
    batch, _ = algo.predict(np.stack([obs, obs]))
    assert batch.shape == (2, 3)


def test_none_is_a_value_of_the_text_hyperparameters() -> None:
    """--hyper recurrence=none and a resumed manifest's hint "none" parse as text."""
    cfg = S.SacGruConfig.from_pairs(
        [("arch", "equivariant"), ("recurrence", "none"), ("hint", "none")]
    )
    assert (cfg.recurrence, cfg.hint) == ("none", "none")
    with pytest.raises(TrainingError, match=r"hyper\.hidden"):
        S.SacGruConfig.from_pairs([("hidden", "none")])


def test_training_on_the_estimates_steps_the_envs_with_them(tmp_path: Path) -> None:
    """residual 'adaptive': the envs step with the actor's actions on the estimates, the
    replay keeps the actor's own, and the checkpoint serves on the estimates."""
    hyper = {**SMALL, "learning_starts": 20, "updates_per_step": 0.25, "family_groups": 2}
    cfg = family_config(
        tmp_path, steps=120, hyper={**hyper, "hint": "adaptive", "residual": "adaptive"}
    )
    trainer = Trainer(cfg)
    algo = trainer.algorithm
    assert isinstance(algo, S.SacGru)
    stepped: list[tuple[np.ndarray, np.ndarray]] = []
    env_action = algo.env_action

    def spy(actions: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        out = env_action(actions, tokens)
        stepped.append((actions.copy(), out))
        return out

    algo.env_action = spy  # type: ignore[method-assign]
    result = trainer.learn()
    shifted = [not np.array_equal(a, b) for a, b in stepped]
    assert any(shifted) and all(np.abs(b).max() <= 1.0 for _, b in stepped)
    kept = set(np.concatenate([r.action[r.has_action].ravel() for r in algo.replays.values()]))
    actor = set(np.concatenate([a.ravel() for a, _ in stepped]))
    env = set(np.concatenate([b.ravel() for _, b in stepped]))
    assert kept and kept <= actor and not kept <= env
    policy = load(f"sac-gru:{result.last}")
    assert isinstance(policy, SetSacGruPolicy) and policy._residual == "adaptive"


def test_central_critic_reads_the_servers_truth_and_the_actor_does_not(tmp_path: Path) -> None:
    """hyper critic_view 'central' (with lb_nodes 'all'): every replay row carries its env's
    servers' truth after the interval (CENTRAL_COLUMNS) beside the node's tokens; the
    critics' encoders read the wider tokens, the actor's the node's own, so the served
    checkpoint is the same network as without it; and the option needs self-play."""
    algo, result = train_lb_nodes(tmp_path, "all", critic_view="central")
    cfg = algo.cfg
    assert cfg.stored_dim == cfg.token_dim + len(S.CENTRAL_COLUMNS)
    learner = algo.learner
    actor_in = learner.actor.trunk.encode.in_features
    assert actor_in == cfg.token_dim
    assert learner.critic1.trunk.encode.in_features == cfg.stored_dim
    for g in algo.groups:
        envs = g.envs
        assert isinstance(envs, S.EveryNode)
        assert g.obs is not None and g.obs.shape[-1] == cfg.stored_dim
        util, queue, caps = envs.envs.truth[0]
        want = np.stack([util, np.log1p(queue / caps), np.log(caps / g.scenario.capacities)], -1)
        central = g.obs[:, :, cfg.token_dim :]
        np.testing.assert_allclose(central[0], want, rtol=1e-6)
        if g.scenario.lb_nodes > 1:  # both nodes of env 0: the same truth
            np.testing.assert_array_equal(central[0], central[1])
    served = checkpoint.load(result.last, algorithm="sac-gru")
    assert served.manifest["dims"]["token_dim"] == cfg.token_dim
    with pytest.raises(ValueError, match=r"hyper.critic_view: 'central' needs"):
        S.SacGruConfig(arch="equivariant", critic_view="central")
    with pytest.raises(ValueError, match=r"hyper.critic_view: expected 'node' or 'central'"):
        S.SacGruConfig(critic_view="global")


def test_dispatch_prequal_w_trains_and_serves_on_top_of_prequal(tmp_path: Path) -> None:
    """hyper dispatch 'prequal-w' (with weight_base 'uniform'): the rollout envs dispatch
    by prequal-w whatever the family says, the checkpoint serves its weights with
    prequal-w, and its zero action is Prequal itself (weights all ones)."""
    algo, result = train_lb_nodes(
        tmp_path, "all", dispatch="prequal-w", weight_base="uniform", prior_weight="1.0"
    )
    for g in algo.groups:
        assert g.scenario.dispatch == "sed" and g.envs is not None  # the family's rule
        envs = g.envs.envs if isinstance(g.envs, S.EveryNode) else g.envs
        assert envs.scenario.dispatch == "prequal-w"
    policy = load(f"sac-gru:{result.last}")
    assert policy.dispatch == "prequal-w"
    caps = np.array([1.0, 2.0, 4.0])
    assert np.array_equal(policy._spec.weights(np.zeros(3), caps), np.ones(3))
    m = checkpoint.load(result.last, algorithm="sac-gru").manifest
    assert m["hyper"]["dispatch"] == "prequal-w"
    with pytest.raises(ValueError, match=r"hyper.dispatch: 'prequal-w' needs weight_base"):
        S.SacGruConfig(dispatch="prequal-w")
    with pytest.raises(ValueError, match=r"hyper.dispatch: expected one of sed, prequal-w"):
        S.SacGruConfig(dispatch="wcmp")
    # A manifest that names another rule, or prequal-w over capacities, is refused.
    for hyper, base, match in (
        ({"dispatch": "wcmp"}, "uniform", "expected one of sed, prequal-w"),
        ({"dispatch": "prequal-w"}, "capacity", "needs action.base 'uniform'"),
    ):
        bad = {**m, "hyper": {**m["hyper"], **hyper}, "action": {**m["action"], "base": base}}
        with pytest.raises(checkpoint.CheckpointError, match=match):
            sac_gru_policy(checkpoint.load(result.last).arrays, bad)
    # A checkpoint from before the option serves SED.
    old = {**m, "hyper": {k: v for k, v in m["hyper"].items() if k != "dispatch"}}
    old["action"] = {**m["action"], "base": "capacity"}
    assert sac_gru_policy(checkpoint.load(result.last).arrays, old).dispatch == "sed"
