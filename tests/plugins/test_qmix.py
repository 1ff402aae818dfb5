"""QMIX: the original code's defect classes, train = serve, resume, the original API, learning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from marllbd_rl import QMIXAgent, qmix  # noqa: E402
from marllbd_rl.replay import EpisodeBatch, EpisodeBuffer  # noqa: E402

from marllbd import checkpoint  # noqa: E402
from marllbd.policies import Policy, PolicyContext, load  # noqa: E402
from marllbd.policies.heuristics import StaticWeights  # noqa: E402
from marllbd.sim.scenario import load_scenario  # noqa: E402
from marllbd.training import Hooks, TrainConfig, Trainer, TrainingError, evaluate, logs  # noqa: E402

TWO_SERVERS = """
duration = 20.0
lb_nodes = 2
[servers]
workers = [1, 2]
[trace]
kind = "poisson"
load = 0.8
mean_work = 0.05
"""


@pytest.fixture
def two_servers(tmp_path: Path) -> Path:
    """2 LBs in front of 2 servers, one with twice the workers of the other."""
    path = tmp_path / "two.toml"
    path.write_text(TWO_SERVERS)
    return path


def small_learner(
    n_agents: int = 3, rows: int = 2, levels: int = 3, state_dim: int = 7, **cfg: object
) -> qmix.Learner:
    config = dataclasses.replace(
        qmix.QMIXConfig(hidden=16, mixing_embed=8, hypernet_hidden=8), **cfg
    )
    dims = qmix.Dims(n_agents, rows, 5, levels, state_dim, 16, 8, 8)
    torch.manual_seed(0)
    return qmix.Learner(dims, config, np.ones((n_agents, rows), dtype=np.float32))


def random_buffer(
    learner: qmix.Learner, episodes: int = 4, length: int = 12, seed: int = 0
) -> EpisodeBuffer:
    d = learner.dims
    rng = np.random.default_rng(seed)
    buf = EpisodeBuffer(8, length, (d.n_agents, d.rows, d.features), d.state_dim, seed=seed)
    for _ in range(episodes):
        buf.add(
            rng.normal(size=(length + 1, d.n_agents, d.rows, d.features)).astype(np.float32),
            rng.normal(size=(length + 1, d.state_dim)).astype(np.float32),
            rng.integers(0, d.levels, size=(length, d.n_agents, d.rows)),
            rng.random(length).astype(np.float32),
            np.zeros(length, dtype=np.float32),
        )
    return buf


def reference_loss(learner: qmix.Learner, batch: EpisodeBatch, actions: np.ndarray) -> float:
    """QMIX's loss written out with loops: each agent's Q taken at `actions` of that agent."""
    obs = torch.from_numpy(batch.obs)
    state = torch.from_numpy(batch.state)
    with torch.no_grad():
        q = learner._unroll(learner.agent, obs).numpy()
        tq = learner._unroll(learner.target_agent, obs).numpy()
    b_n, w = batch.reward.shape
    n_agents, rows = learner.dims.n_agents, learner.dims.rows
    chosen = np.zeros((b_n, w, n_agents), dtype=np.float32)
    nxt = np.zeros((b_n, w, n_agents), dtype=np.float32)
    for b in range(b_n):
        for t in range(w):
            for a in range(n_agents):
                chosen[b, t, a] = np.mean([q[b, t, a, r, actions[b, t, a, r]] for r in range(rows)])
                best = [int(np.argmax(q[b, t + 1, a, r])) for r in range(rows)]
                nxt[b, t, a] = np.mean([tq[b, t + 1, a, r, best[r]] for r in range(rows)])
    with torch.no_grad():
        q_tot = learner.mixer(torch.from_numpy(chosen), state[:, :-1]).numpy()
        q_next = learner.target_mixer(torch.from_numpy(nxt), state[:, 1:]).numpy()
    target = batch.reward + learner.config.gamma * (1 - batch.terminated) * q_next
    return float((((q_tot - target) * batch.mask) ** 2).sum() / batch.mask.sum())


# -- the defects of the original code -------------------------------------------------


def test_loss_gathers_each_agents_q_at_its_own_action() -> None:
    learner = small_learner()
    with torch.no_grad():  # online and target networks differ, as in training: double Q matters
        for p in learner.agent.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    batch = random_buffer(learner).sample(4, 2, 6)
    assert len({tuple(a.ravel()) for a in batch.actions.transpose(2, 0, 1, 3)}) > 1
    loss, _ = learner.loss(batch)
    right = reference_loss(learner, batch, batch.actions)
    assert loss.item() == pytest.approx(right, rel=1e-5)
    # The case tells right from wrong: agent 0's actions for everyone, or the greedy ones.
    everyone_as_agent0 = np.repeat(batch.actions[:, :, :1], learner.dims.n_agents, axis=2)
    with torch.no_grad():
        greedy = learner._unroll(learner.agent, torch.from_numpy(batch.obs))[:, :-1].argmax(-1)
    for wrong in (everyone_as_agent0, greedy.numpy()):
        assert abs(reference_loss(learner, batch, wrong) - right) > 1e-3 * right


def test_one_update_reaches_every_parameter() -> None:
    learner = small_learner()
    learner.update(random_buffer(learner).sample(8, 2, 6))
    for prefix, module in (("agent", learner.agent), ("mixer", learner.mixer)):
        for name, p in module.named_parameters():
            assert p.grad is not None, f"{prefix}.{name} got no gradient"
            assert p.grad.abs().sum() > 0, f"{prefix}.{name} got a zero gradient"


@pytest.mark.parametrize("seed", range(5))
def test_mixer_is_monotonic_in_every_agent(seed: int) -> None:
    torch.manual_seed(seed)
    mixer = qmix.Mixer(n_agents=4, state_dim=9, embed=8, hyper=16, clip=10.0)
    with torch.no_grad():
        for p in mixer.parameters():
            p.mul_(3.0)  # large weights of both signs: abs() alone must keep it monotonic
    state = torch.randn(64, 9) * 3
    q = (torch.randn(64, 4) * 5).requires_grad_(True)
    mixer(q, state).sum().backward()
    assert q.grad is not None and (q.grad >= 0).all()
    with torch.no_grad():
        base = mixer(q, state)
        for a in range(4):
            bumped = q.clone()
            bumped[:, a] += 0.5
            assert (mixer(bumped, state) >= base - 1e-6).all()


def test_target_networks_follow_the_online_ones() -> None:
    learner = small_learner(target_every=3, target_tau=1.0)
    buf = random_buffer(learner)
    before = [p.clone() for p in learner.target_agent.parameters()]
    for _ in range(3):
        learner.update(buf.sample(4, 2, 6))
    for online, target, old in zip(
        learner.agent.parameters(), learner.target_agent.parameters(), before, strict=True
    ):
        assert torch.equal(online, target) and not torch.equal(target, old)
    for online, target in zip(
        learner.mixer.parameters(), learner.target_mixer.parameters(), strict=True
    ):
        assert torch.equal(online, target)
    learner.update(buf.sample(4, 2, 6))
    assert not all(
        torch.equal(a, b)
        for a, b in zip(learner.agent.parameters(), learner.target_agent.parameters(), strict=True)
    )


def test_polyak_target_update_moves_tau_of_the_way() -> None:
    learner = small_learner(target_every=1, target_tau=0.05)
    old = [p.clone() for p in learner.target_mixer.parameters()]
    learner.update(random_buffer(learner).sample(4, 2, 6))
    for p, tp, o in zip(
        learner.mixer.parameters(), learner.target_mixer.parameters(), old, strict=True
    ):
        assert torch.allclose(tp, 0.95 * o + 0.05 * p, atol=1e-6)
        assert not torch.equal(tp, o)


def test_masked_loss_ignores_padding() -> None:
    learner = small_learner()
    batch = random_buffer(learner, length=12).sample(6, 2, 12)  # windows of 14, episodes of 12
    padded = ~(batch.obs != 0).any(axis=(2, 3, 4))  # random observations are never all zero
    assert padded.any() and (batch.mask == 0).any()
    loss, _ = learner.loss(batch)
    noise = np.random.default_rng(1).normal(size=batch.reward.shape) * 100
    garbage = EpisodeBatch(
        obs=np.where(padded[:, :, None, None, None], 1e3, batch.obs).astype(np.float32),
        state=np.where(padded[:, :, None], -1e3, batch.state).astype(np.float32),
        actions=np.where(batch.mask[:, :, None, None] == 0, 2, batch.actions),
        reward=np.where(batch.mask == 0, noise, batch.reward).astype(np.float32),
        terminated=batch.terminated,
        mask=batch.mask,
    )
    assert learner.loss(garbage)[0].item() == pytest.approx(loss.item(), rel=1e-6)


def test_time_limit_bootstraps_and_termination_does_not() -> None:
    learner = small_learner()
    d, t = learner.dims, 5
    rng = np.random.default_rng(2)
    batch = EpisodeBatch(
        obs=rng.normal(size=(1, t + 1, d.n_agents, d.rows, d.features)).astype(np.float32),
        state=rng.normal(size=(1, t + 1, d.state_dim)).astype(np.float32),
        actions=rng.integers(0, d.levels, size=(1, t, d.n_agents, d.rows)),
        reward=rng.random((1, t)).astype(np.float32),
        terminated=np.zeros((1, t), np.float32),
        mask=np.ones((1, t), np.float32),
    )

    def loss_with_final_state(terminated: bool, value: float) -> float:
        state = batch.state.copy()
        state[0, t] = value
        term = batch.terminated.copy()
        term[0, t - 1] = float(terminated)
        return learner.loss(dataclasses.replace(batch, state=state, terminated=term))[0].item()

    # Truncated: the final state's value enters the target; terminated: it does not.
    assert loss_with_final_state(False, 5.0) != loss_with_final_state(False, -5.0)
    assert loss_with_final_state(True, 5.0) == loss_with_final_state(True, -5.0)


def test_buffer_windows_burn_in_and_padding() -> None:
    buf = EpisodeBuffer(4, 10, (1, 1, 1), 1, seed=0)
    t = 7
    obs = np.arange(1, t + 2, dtype=np.float32).reshape(t + 1, 1, 1, 1)
    buf.add(obs, obs.reshape(t + 1, 1), np.zeros((t, 1, 1), int), np.ones(t), np.zeros(t))
    batch = buf.sample(200, 3, 4)
    starts = batch.obs[:, 0, 0, 0, 0].astype(int) - 1
    assert set(starts) == set(range(t))
    for s, mask, ob in zip(starts, batch.mask, batch.obs[:, :, 0, 0, 0], strict=True):
        steps = s + np.arange(7)
        in_episode = steps < t
        counted = np.ones(7, bool) if s == 0 else np.arange(7) >= 3
        np.testing.assert_array_equal(mask, (in_episode & counted).astype(np.float32))
        np.testing.assert_array_equal(ob, np.where(s + np.arange(8) <= t, s + np.arange(8) + 1, 0))


def test_hidden_state_resets_at_episode_start() -> None:
    agent = QMIXAgent(num_agents=2, obs_dim=3, action_dim=4, seed=0)
    rng = np.random.default_rng(0)
    episode = [rng.normal(size=(2, 3)).astype(np.float32) for _ in range(6)]
    for t, obs in enumerate(episode[:-1]):
        actions = agent.select_actions(obs)
        agent.update(obs, actions, 0.5, episode[t + 1], done=t == len(episode) - 2)
    carried = agent.learner.agent(
        agent._obs_tensor(episode[0]), agent.learner.ids, torch.randn(2, agent.config.hidden)
    )[1]
    agent.select_actions(episode[0])
    with torch.no_grad():
        fresh = agent.learner.agent(
            agent._obs_tensor(episode[0]), agent.learner.ids, torch.zeros(2, agent.config.hidden)
        )[1]
    assert torch.equal(agent._h, fresh) and not torch.equal(agent._h, carried)


def tiny_config(scenario: Path, out: Path, **kw: object) -> TrainConfig:
    hyper = {"hidden": 16, "warmup_steps": 40, "train_every": 4, "batch_size": 4,
             "seq_len": 6, "burn_in": 2, "eps_anneal_steps": 100, **kw.pop("hyper", {})}  # type: ignore[dict-item]  # fmt: skip
    base: dict[str, object] = {
        "algo": "qmix", "scenario": str(scenario), "out": out, "steps": 160, "seed": 3,
        "envs": 2, "eval_every": 80, "eval_seeds": (11,), "episode_seconds": 5.0,
        "progress": False, "log_every": 40,
    }  # fmt: skip
    return TrainConfig(**{**base, **kw, "hyper": tuple(hyper.items())})  # type: ignore[arg-type]


def algorithm(scenario: Path, episode_seconds: float, envs: int = 1, **hyper: object) -> qmix.Qmix:
    cfg = tiny_config(scenario, Path("unused"), envs=envs, episode_seconds=episode_seconds,
                      hyper=hyper)  # fmt: skip
    return qmix.Qmix(cfg, load_scenario(scenario).replace(duration=episode_seconds), Hooks())


def test_rollout_zeroes_the_hidden_state_at_each_episode_start(two_servers: Path) -> None:
    algo = algorithm(two_servers, 2.0)  # 7-step episodes
    algo.collect(1)
    assert algo.h.abs().sum() > 0
    ends = [k for k in range(7) if algo.collect(1).episodes]
    assert ends == [5]  # the first collect was step 1 of 7
    algo.collect(1)  # the next episode starts from zero, then steps once
    fresh = algorithm(two_servers, 2.0)
    fresh._reset()
    assert fresh.h.abs().sum() == 0


def test_rollout_stores_the_time_limit_as_truncation(two_servers: Path) -> None:
    algo = algorithm(two_servers, 1.0)
    steps = [algo.collect(1) for _ in range(3)]
    assert [len(s.episodes) for s in steps] == [0, 0, 1] and len(algo.buffer) == 1
    assert algo.buffer.length[0] == 3
    assert algo.buffer.terminated[0, :3].tolist() == [0.0, 0.0, 0.0]  # bootstrapped


def test_a_budget_inside_an_episode_is_met_exactly(two_servers: Path) -> None:
    algo = algorithm(two_servers, 2.0, envs=2)
    got = [algo.collect(2).steps, algo.collect(1).steps]
    assert got == [2, 1] and len(algo.buffer) == 0


# -- reproducibility, train = serve, training outputs --------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> object:
    root = tmp_path_factory.mktemp("tiny")
    (root / "two.toml").write_text(TWO_SERVERS)
    return Trainer(tiny_config(root / "two.toml", root / "run")).learn()


def test_training_is_reproducible_bit_for_bit(tiny_run: object, tmp_path: Path) -> None:
    first = tiny_run
    scenario = first.metrics_csv.parents[1] / "two.toml"  # type: ignore[attr-defined]
    again = Trainer(tiny_config(scenario, tmp_path / "again")).learn()
    ta = checkpoint.load(first.last, algorithm="qmix").arrays  # type: ignore[attr-defined]
    tb = checkpoint.load(again.last, algorithm="qmix").arrays
    assert ta.keys() == tb.keys() and any(k.startswith("opt.") for k in ta)
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    sa, sb = logs.read(first.metrics_csv), logs.read(again.metrics_csv)  # type: ignore[attr-defined]
    del sa["train/steps_per_second"], sb["train/steps_per_second"]  # wall-clock
    assert sa == sb


def test_training_writes_its_outputs_and_resumes_exactly(tiny_run: object, tmp_path: Path) -> None:
    first = tiny_run
    out = first.metrics_csv.parent  # type: ignore[attr-defined]
    assert first.steps == 160  # type: ignore[attr-defined]
    assert (out / "learning_curve.png").stat().st_size > 0
    series = logs.read(first.metrics_csv)  # type: ignore[attr-defined]
    assert series["eval/fct_mean"][0] == [0, 80, 160]
    assert series["train/loss"][0] == [80, 120, 160]
    manifest = checkpoint.load(first.best, algorithm="qmix").manifest  # type: ignore[attr-defined]
    assert manifest["action"] == {"type": "discrete", "levels": [1.0, 1.5, 2.0],
                                  "base": "capacity", "spread": 3.0}  # fmt: skip
    assert manifest["reward"]["metric"] == "jain" and manifest["hyper"]["hidden"] == 16
    last = checkpoint.load(first.last, algorithm="qmix").manifest  # type: ignore[attr-defined]
    updates = last["progress"]["updates"]
    assert updates == (160 - 40) // 4 and last["progress"]["steps"] == 160
    cfg = tiny_config(out.parent / "two.toml", out, resume=first.last, steps=240)  # type: ignore[attr-defined]
    resumed = Trainer(cfg)
    assert (resumed.steps, resumed.algorithm.updates) == (160, updates)
    more = resumed.learn()
    assert more.steps == 240
    progress = checkpoint.load(more.last, algorithm="qmix").manifest["progress"]
    # The replay restarts empty: updates wait warmup_steps (40) again, then one per 4 steps.
    assert progress["updates"] == updates + (240 - 160 - 40) // 4


def test_bad_hyperparameters_are_named(two_servers: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"hyper\.hiddn: unknown qmix hyperparameter"):
        Trainer(tiny_config(two_servers, tmp_path, hyper={"hiddn": 3}))
    with pytest.raises(TrainingError, match="gamma"):
        Trainer(tiny_config(two_servers, tmp_path, hyper={"gamma": "1.5"}))


def test_policy_decides_like_the_training_rollout(tmp_path: Path) -> None:
    """train = serve: the daemon's policy maps an LB's features to the weights the env applies."""
    trainer = Trainer.make("qmix", "paper-7", tmp_path, envs=1, episode_seconds=3.0,
                           hyper={"eps_start": 0.0, "eps_end": 0.0})  # fmt: skip
    algo = trainer.algorithm
    assert isinstance(algo, qmix.Qmix)
    algo.collect(1)  # one step: some feature statistics, a non-zero hidden state
    algo._episode = None  # the next collect starts a fresh episode, as a served run does
    path = trainer.save(tmp_path / "ckpt")
    policies = [load(f"qmix:{path}#lb={lb}") for lb in range(2)]
    env = algo.envs  # one sub-env: index 0 of its arrays
    for p in policies:
        assert isinstance(p, Policy) and p.dispatch == "sed"
        p.reset(PolicyContext(7, env.capacities))
    algo._reset()
    for _ in range(5):
        served = [
            p.decide(env._feats[0, lb], np.ones(7, bool), None) for lb, p in enumerate(policies)
        ]
        algo.collect(1)
        for lb in range(2):
            np.testing.assert_array_equal(served[lb], env._weights[0, lb])


def test_seed_agent_refuses_a_checkpoint_of_other_dims(tmp_path: Path) -> None:
    path = QMIXAgent(num_agents=2, obs_dim=4, action_dim=2).save(tmp_path / "a")
    with pytest.raises(checkpoint.CheckpointError, match="dims"):
        QMIXAgent(num_agents=3, obs_dim=4, action_dim=2).load(path)


def test_learner_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    learner = small_learner()
    buf = random_buffer(learner)
    for _ in range(3):
        learner.update(buf.sample(4, 2, 6))
    learner.observe(buf.obs[:1], buf.state[:1])
    manifest = {"algorithm": "qmix", "seed": 0, "scenario": "t"}
    manifest |= qmix.manifest(learner.config, learner.dims, None)
    manifest["progress"] = {"steps": 0, "episodes": 0, "updates": 3, "best_fct": None}
    checkpoint.save(tmp_path / "x", manifest, learner.arrays())
    copy = small_learner()
    copy.load_arrays(checkpoint.load(tmp_path / "x", algorithm="qmix").arrays, tmp_path)
    saved, restored = learner.arrays(), copy.arrays()
    assert saved.keys() == restored.keys()
    for name, value in saved.items():
        np.testing.assert_array_equal(value, restored[name], err_msg=name)
    batch = buf.sample(4, 2, 6)
    assert learner.update(batch) == copy.update(batch)


# -- the original description's API -------------------------------------------------------


def test_seed_api_calls(tmp_path: Path) -> None:
    agent = QMIXAgent(
        num_agents=4, obs_dim=20, action_dim=4, config=qmix.QMIXConfig(warmup_steps=20), seed=1
    )
    rng = np.random.default_rng(0)
    for _episode in range(3):
        obs = rng.random((4, 20)).astype(np.float32)
        for t in range(10):
            actions = agent.select_actions(obs)
            assert actions.shape == (4,) and actions.dtype == np.int64
            assert ((actions >= 0) & (actions < 4)).all()
            next_obs = rng.random((4, 20)).astype(np.float32)
            agent.update(obs, actions, float(actions.mean()), next_obs, done=t == 9)
            obs = next_obs
    assert agent.learner.updates > 0
    path = agent.save(tmp_path / "checkpoints" / "qmix_best.pt")
    assert (path / "manifest.json").is_file()
    again = QMIXAgent(num_agents=4, obs_dim=20, action_dim=4)
    again.load(tmp_path / "checkpoints" / "qmix_best.pt")
    assert again.steps == agent.steps == 30
    probe = rng.random((4, 20)).astype(np.float32)
    agent.reset()
    np.testing.assert_array_equal(
        agent.select_actions(probe, explore=False), again.select_actions(probe, explore=False)
    )
    with pytest.raises(ValueError, match="obs: expected shape"):
        agent.select_actions(np.zeros((3, 20)))


def test_seed_api_done_terminates_unless_truncated() -> None:
    agent = QMIXAgent(num_agents=2, obs_dim=3, action_dim=2)
    obs = np.zeros((2, 3), np.float32)
    agent.update(obs, np.zeros(2, int), 1.0, obs, done=True)
    agent.update(obs, np.zeros(2, int), 1.0, obs, done=True, truncated=True)
    assert agent.buffer.terminated[:2, 0].tolist() == [1.0, 0.0]


# -- learning ------------------------------------------------------------------------------


def test_learns_to_beat_uniform_weights(two_servers: Path, tmp_path: Path) -> None:
    """With uniform base weights the agents must discover that server 1 is twice as fast."""
    res = Trainer(
        TrainConfig(
            algo="qmix",
            scenario=str(two_servers),
            out=tmp_path / "run",
            steps=1500,
            seed=0,
            envs=2,
            eval_every=300,
            eval_seeds=(1001, 1002),
            progress=False,
            hyper=(("weight_base", "uniform"), ("eps_anneal_steps", 1000)),
        )
    ).learn()
    uniform_sed = evaluate.PolicySource(
        "sed-uniform", lambda lb: StaticWeights("uniform", "sed", by_capacity=False)
    )
    learned = evaluate.PolicySource("qmix", lambda lb: load(f"qmix:{res.best}#lb={lb}"))
    runs = evaluate.evaluate(load_scenario(two_servers), [uniform_sed, learned],
                             range(2000, 2006), progress=False)  # fmt: skip
    uniform, trained = evaluate.summary(runs)
    # Measured over training seeds 0-5 (before the harness split): learned / uniform 0.82-0.92.
    assert trained.mean_fct < 0.95 * uniform.mean_fct


def test_eval_of_a_spec_runs_each_nodes_own_agents_as_training_did(tiny_run: object) -> None:
    """`marllbd eval --policies qmix:DIR` on 2 LB nodes: node N runs LB N's agents, so the
    figures are those the trainer recorded for the checkpoint (same loop, same seeds)."""
    best = tiny_run.best  # type: ignore[attr-defined]
    recorded = checkpoint.load(best, algorithm="qmix").manifest["eval"]
    scenario = load_scenario(best.parents[2] / "two.toml")
    (summary,) = evaluate.summary(
        evaluate.evaluate(scenario, [f"qmix:{best}"], recorded["seeds"], progress=False)
    )
    assert summary.mean_fct == recorded["fct_mean"] and summary.p90_fct == recorded["fct_p90"]
    pinned = f"qmix:{best}#lb=0"  # every node runs LB 0's agents: a different policy
    (other,) = evaluate.summary(evaluate.evaluate(scenario, [pinned], recorded["seeds"]))
    assert other.mean_fct != recorded["fct_mean"]


def test_two_update_threads_give_the_one_thread_update_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The target network's unroll on the side thread changes nothing."""
    from tests.plugins.test_sac_gru import assert_updates_thread_invariant

    one, two = small_learner(update_threads=1), small_learner(update_threads=2)
    buf = random_buffer(one)
    batches = [buf.sample(4, 2, 5) for _ in range(3)]
    assert_updates_thread_invariant(one, two, batches, monkeypatch, ("_target_unroll",))


def test_update_threads_is_checked() -> None:
    with pytest.raises(ValueError, match=r"qmix\.update_threads: expected 1 or 2, got 0"):
        qmix.QMIXConfig(update_threads=0)
