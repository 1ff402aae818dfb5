"""The environments' compiled reward and step statistics against marllbd.fairness's numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marllbd import fairness
from marllbd.envs.reward import METRIC_CODES, SHAPE_CODES, RewardSpec, reward_kernel, step_kernel
from marllbd.features import FEATURE_NAMES

_MEAN = FEATURE_NAMES.index("fct_mean")
_P90 = FEATURE_NAMES.index("fct_p90")


def _matrices() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = [np.zeros((4, 12)), np.ones((5, 12)), rng.random((1, 12))]
    for _ in range(200):
        m = int(rng.integers(1, 40))
        f = rng.random((m, 12)) * np.exp(rng.uniform(-20, 20))
        if rng.random() < 0.3:
            f[rng.random(m) < 0.3] = 0.0  # idle servers beside busy ones
        if rng.random() < 0.2:
            f[:] = f[0]  # all equal
        out.append(f)
    return out


def test_codes_cover_the_fairness_module() -> None:
    assert set(METRIC_CODES) == set(fairness.METRICS)
    assert tuple(SHAPE_CODES) == fairness.SHAPES


@pytest.mark.parametrize("shaping", ["identity", "exp", "log"])
@pytest.mark.parametrize("metric", sorted(fairness.METRICS))
def test_reward_matches_the_fairness_module(metric: str, shaping: str) -> None:
    for field in ("dur_decayed_mean", "fct_p90"):
        spec = RewardSpec(metric, field, shaping)
        for feats in _matrices():
            x = feats[:, spec.column]
            value = fairness.metric(metric).fn(x)
            want = fairness.reward(metric, x, shaping)
            got = spec(feats)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
            # The metric value itself, before shaping (atol 0: a perfectly fair 0 stays 0).
            _, got_value = reward_kernel(feats, *spec.codes)
            np.testing.assert_allclose(got_value, value, rtol=1e-12, atol=0)


@pytest.mark.parametrize("metric", sorted(fairness.METRICS))
def test_step_kernel_matches_numpy(metric: str) -> None:
    rng = np.random.default_rng(3)
    spec = RewardSpec(metric)
    for feats in _matrices():
        m = feats.shape[0]
        for n_fct in (np.zeros(m, np.int64), rng.integers(0, 500, m)):
            reward, value, fct_mean, p90 = step_kernel(feats, n_fct, *spec.codes)
            assert reward == spec(feats)
            assert math.isfinite(value)
            total = int(n_fct.sum())
            if total == 0:
                assert math.isnan(fct_mean) and math.isnan(p90)
                continue
            np.testing.assert_allclose(
                fct_mean, (feats[:, _MEAN] @ n_fct) / total, rtol=1e-12, atol=0
            )
            assert p90 == feats[:, _P90].max()
