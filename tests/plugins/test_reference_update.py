"""The cheaper SAC-GRU and QMIX updates learn what the pre-change ones learned: from the
same state and batch, the same losses and, after a few updates, the same parameters
(float tolerance: fused Adam may differ in the last bits), against marllbd_rl.reference."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from marllbd_rl import qmix, reference  # noqa: E402

from tests.plugins.test_qmix import random_buffer, small_learner  # noqa: E402
from tests.plugins.test_sac_gru import filled_agent, sample  # noqa: E402


def assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module, tol: float) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0.0, atol=tol), f"{name}: {float((p - q).abs().max())}"


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
def test_sac_update_matches_the_reference(action_type: str) -> None:
    """The current update with a GRU per critic (critic_trunk 'own') is the old one."""
    new, replay = filled_agent(action_type, critic_trunk="own")
    old = copy.deepcopy(new)
    ref = reference.SacReference(old)
    batches = [sample(new, replay) for _ in range(3)]
    for batch in batches:
        # The same noise for the reparameterised samples in both.
        torch.manual_seed(7)
        got = new.update(batch)
        torch.manual_seed(7)
        want = ref.update(batch)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for name in ("actor", "critic1", "critic2", "target1", "target2"):
        assert_same_parameters(getattr(new, name), getattr(old, name), 1e-6)
    assert abs(float(new.log_alpha.detach() - old.log_alpha.detach())) < 1e-6
    # They did move: the comparison is not between two untouched copies.
    fresh, _ = filled_agent(action_type, critic_trunk="own")
    pairs = zip(new.actor.parameters(), fresh.actor.parameters(), strict=True)
    assert any(not torch.equal(p, q) for p, q in pairs)


def test_qmix_whole_sequence_gru_is_the_stepped_cell_bit_for_bit() -> None:
    learner = small_learner()
    obs = torch.from_numpy(random_buffer(learner).sample(4, 2, 5).obs)
    with torch.no_grad():
        for p in learner.agent.parameters():
            p.add_(0.1 * torch.randn_like(p))
    got = learner._unroll(learner.agent, obs)
    want = reference.unroll_stepped(learner.agent, obs, learner.ids)
    assert torch.equal(got, want)


def test_qmix_update_matches_the_reference() -> None:
    new = small_learner()
    old = copy.deepcopy(new)
    ref = reference.QmixReference(old)
    buffer = random_buffer(new)
    for _ in range(3):
        batch = buffer.sample(6, 2, 5)
        got = new.update(batch)["loss"]
        want = ref.update(batch)
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7)
    for a, b in ((new.agent, old.agent), (new.mixer, old.mixer)):
        assert_same_parameters(a, b, 1e-6)
    for a, b in ((new.target_agent, old.target_agent), (new.target_mixer, old.target_mixer)):
        assert_same_parameters(a, b, 1e-6)
    assert np.isfinite(got)


def test_qmix_single_step_and_sequence_forward_agree() -> None:
    """Rollouts step the cell one interval at a time; training unrolls whole windows."""
    learner = small_learner()
    net: qmix.AgentNetwork = learner.agent
    d = learner.dims
    obs = torch.randn(d.n_agents, 6, d.rows, d.features)
    h = torch.zeros(d.n_agents, d.hidden)
    with torch.no_grad():
        whole, h_end = net(obs, learner.ids, h)
        steps = []
        for t in range(6):
            q, h = net(obs[:, t : t + 1], learner.ids, h)
            steps.append(q)
    assert torch.allclose(whole, torch.cat(steps, 1), atol=1e-6)
    assert torch.allclose(h_end, h, atol=1e-6)


def test_sequence_replay_draws_valid_windows_with_the_stated_probabilities() -> None:
    """A stream is drawn uniformly, then a start row uniformly among its filled rows, and
    invalid windows are redrawn: a valid window of stream s has probability proportional to
    1 / rows(s) (uniform over windows when the streams advance in lockstep, as in training).
    Streams of 9 and 12 rows: 5 and 8 windows of 4 transitions; frequencies within 4 sigma,
    windows that would cross an episode's end never drawn."""
    from marllbd_rl.replay import SequenceReplay

    replay = SequenceReplay(2, 40, 1, 1, window=4, seed=3)
    for s, length in ((0, 9), (1, 12)):
        replay.start(s, np.array([100.0 * s]))
        for t in range(1, length):
            replay.add(s, np.zeros(1), 0.0, False, np.array([100.0 * s + t]))
    weights = {float(j): 1 / 9 for j in range(5)} | {100.0 + j: 1 / 12 for j in range(8)}
    total = sum(weights.values())
    draws = 4000
    firsts = np.concatenate([replay.sample(200, 1, False).obs[:, 0, 0].numpy() for _ in range(20)])
    values, counts = np.unique(firsts, return_counts=True)
    assert set(values.tolist()) <= set(weights)
    got = dict(zip(values.tolist(), counts.tolist(), strict=True))
    for key, w in weights.items():
        p = w / total
        sigma = (draws * p * (1 - p)) ** 0.5
        assert abs(got.get(key, 0) - draws * p) < 4 * sigma, (key, got.get(key, 0), draws * p)
