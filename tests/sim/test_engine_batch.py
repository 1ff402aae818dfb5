"""EngineBatch: several engines advanced in one compiled call, each as if alone."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from marllbd.sim.engine import Engine, EngineBatch
from marllbd.sim.scenario import load_scenario, synthetic


def test_each_engine_advances_as_it_would_alone() -> None:
    sc = load_scenario("paper-7")  # two LB nodes: LB 1's weights and features
    batch = EngineBatch([Engine(sc.replace(seed=s)) for s in (1, 2)])
    alone = [Engine(sc.replace(seed=s)) for s in (1, 2)]
    feats = np.zeros((2, 2, 7, 12))
    one = np.zeros((2, 7, 12))
    rng = np.random.default_rng(0)
    for _ in range(40):
        w = rng.uniform(0.5, 2.0, size=(2, 7))
        truth, totals, n_fct = batch.advance(feats, w, lb=1)
        for i, e in enumerate(alone):
            e.set_weights(1, w[i])
            t = e.advance(one)
            assert np.array_equal(truth[i], t) and np.array_equal(feats[i], one)
            assert tuple(totals[i]) == e.totals
            assert np.array_equal(n_fct[i], e.fct_counts(0))
    for a, b in zip(batch.engines, alone, strict=True):
        assert np.array_equal(a.f_fct, b.f_fct, equal_nan=True) and a.t == b.t


def test_a_replaced_engine_and_a_pickled_batch_keep_going() -> None:
    sc = synthetic(4, duration=5.0)
    batch = EngineBatch([Engine(sc), Engine(sc.replace(seed=9))])
    feats = np.zeros((2, 1, 4, 12))
    batch.advance(feats)
    batch[0] = Engine(sc.replace(seed=3))  # a new episode
    copy = pickle.loads(pickle.dumps(batch))
    a, b = batch.advance(feats)[0], copy.advance(feats.copy())[0]
    assert np.array_equal(a, b) and batch.engines[0].t == 0.25


def test_the_engines_clocks_are_the_batchs_and_a_replaced_engine_keeps_its_own() -> None:
    sc = synthetic(4, duration=1.0)
    first, second = Engine(sc), Engine(sc.replace(seed=9))
    second.advance()  # joins a batch a step ahead: its clock is kept
    batch = EngineBatch([first, second])
    feats = np.zeros((2, 1, 4, 12))
    batch.advance(feats, only=np.array([True, False]))
    assert (first.t, first.frame_no, second.t, second.frame_no) == (0.25, 1, 0.25, 1)
    assert np.array_equal(batch.t, [0.25, 0.25]) and not batch.t.flags.writeable
    batch[0] = Engine(sc.replace(seed=3))
    for _ in range(3):
        batch.advance(feats)
    # The replaced engine's clock no longer moves with the batch's row it left.
    assert (first.t, first.frame_no) == (0.25, 1)
    assert (batch.engines[0].t, second.t, second.frame_no) == (0.75, 1.0, 4)
    assert batch.done.tolist() == [False, True] == [e.done for e in batch.engines]
    copy = pickle.loads(pickle.dumps(batch))
    copy.advance(feats.copy(), only=np.array([True, False]))
    assert (copy.engines[0].t, copy.engines[0].frame_no, batch.engines[0].t) == (1.0, 4, 0.75)
    assert copy.done.tolist() == [True, True]


def test_bad_batches_and_arrays_are_named() -> None:
    with pytest.raises(ValueError, match="at least one engine"):
        EngineBatch([])
    with pytest.raises(ValueError, match="one layout"):
        EngineBatch([Engine(synthetic(4)), Engine(synthetic(5))])
    batch = EngineBatch([Engine(synthetic(4))])
    with pytest.raises(ValueError, match="feats: expected a C-contiguous float64"):
        batch.advance(np.zeros((2, 1, 4, 12)))
    with pytest.raises(ValueError, match="weights: expected float64"):
        batch.advance(np.zeros((1, 1, 4, 12)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="first_lb"):
        batch.advance(np.zeros((1, 1, 4, 12)), first_lb=1)
