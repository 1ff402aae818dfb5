"""Learned policies served with numpy only: the checkpoint schema and its refusals, what a
fresh interpreter imports to serve one, and that the numpy forward passes compute what the
torch networks they were trained as compute."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from marllbd import checkpoint
from marllbd.checkpoint import CheckpointError
from marllbd.features import FEATURE_NAMES, NUM_FEATURES
from marllbd.features import compute as compute_features
from marllbd.policies import Policy, PolicyContext, PolicyError, load
from marllbd.policies.learned import (
    Layout,
    QMIXPolicy,
    SacGruPolicy,
    load_qmix,
    load_sac_gru,
    qmix_from_checkpoint,
    sac_gru_from_checkpoint,
)
from marllbd.sim.engine import Engine
from marllbd.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    name: ROOT / "configs" / "policies" / name for name in ("seed-16-sac-gru", "drift-7-sac-gru")
}
SEED16 = SHIPPED["seed-16-sac-gru"]
FORBIDDEN = ("torch", "gymnasium", "pettingzoo", "marllbd_rl", "marllbd.training", "marllbd.envs")


def recorded_features(scenario: str, steps: int, seed: int = 3) -> list[np.ndarray]:
    """LB 0's feature matrices over `steps` intervals of a simulated run (SED, capacities)."""
    sc = load_scenario(scenario).replace(seed=seed)
    engine = Engine(sc, rule="sed")
    weights = engine.static_capacities.copy()
    out = []
    for _ in range(steps):
        engine.set_weights(0, weights)
        obs = engine.step().observations[0]
        out.append(compute_features(obs, weights))
    assert any(f[:, FEATURE_NAMES.index("fct_mean")].any() for f in out)  # flows completed
    return out


def edit_manifest(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    manifest = json.loads((path / checkpoint.MANIFEST).read_text())
    change(manifest)
    (path / checkpoint.MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A copy of the shipped seed-16 SAC-GRU checkpoint to damage."""
    return Path(shutil.copytree(SEED16, tmp_path / "ckpt"))


@pytest.fixture(scope="module")
def qmix_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small QMIX checkpoint for seed-16 (4 agents per LB), saved from a fresh Learner with
    perturbed weights and feature statistics from a rollout."""
    return save_qmix(tmp_path_factory.mktemp("qmix") / "ckpt")[0]


def save_qmix(path: Path, scenario: str = "seed-16") -> tuple[Path, Any]:
    pytest.importorskip("torch")
    import torch
    from marllbd_rl import qmix

    from marllbd.envs import MultiAgentLoadBalanceEnv

    env = MultiAgentLoadBalanceEnv(scenario, episode_seconds=3.0)
    layout = Layout.of(env)
    cfg = qmix.QMIXConfig(hidden=16, mixing_embed=8, hypernet_hidden=8)
    dims = qmix.Dims(
        len(layout.agents), env.group_size, NUM_FEATURES, 3, env.state_space.shape[0], 16, 8, 8
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        learner = qmix.Learner(dims, cfg, layout.head_mask(env.group_size))
        with torch.no_grad():
            for p in learner.agent.parameters():
                p.normal_(0.0, 0.2)  # far from the initialisation: argmaxes differ by server
    obs, _ = env.reset(seed=1)
    rows = [np.stack([obs[a] for a in layout.agents])]
    for _ in range(8):
        obs, *_ = env.step({a: np.ones(env.group_size, np.int64) for a in layout.agents})
        rows.append(np.stack([obs[a] for a in layout.agents]))
    learner.observe(np.stack(rows), np.zeros((len(rows), dims.state_dim), np.float32))
    manifest: dict[str, Any] = {"algorithm": "qmix", "seed": 0, "scenario": scenario}
    manifest["progress"] = {"steps": 0, "episodes": 0, "updates": 0, "best_fct": None}
    checkpoint.save(path, manifest | qmix.manifest(cfg, dims, layout), learner.arrays())
    return path, learner


# -- serving imports numpy, not the training stack ------------------------------------------

SERVE = """
import json, sys
import numpy as np
from marllbd.policies import PolicyContext, load
policy = load(sys.argv[1])
n = int(sys.argv[2])
policy.reset(PolicyContext(num_servers=n, capacities=np.linspace(1.0, 4.0, n)))
w = policy.decide(np.random.default_rng(0).random((n, 12)), np.ones(n, bool), None)
assert w.shape == (n,) and np.isfinite(w).all() and (w > 0).all(), w
print(json.dumps(sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[3:])))))
"""


def serve_in_fresh_interpreter(spec: str, n: int) -> list[str]:
    prefixes = [p for m in FORBIDDEN for p in (m, m + ".")]
    out = subprocess.run(
        [sys.executable, "-c", SERVE, spec, str(n), *prefixes],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    imported: list[str] = json.loads(out.stdout.splitlines()[-1])
    return [
        m for m in imported if m in FORBIDDEN or m.startswith(tuple(f + "." for f in FORBIDDEN))
    ]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_policy_serves_without_the_training_stack(name: str) -> None:
    n = json.loads((SHIPPED[name] / "manifest.json").read_text())["dims"]["num_servers"]
    assert serve_in_fresh_interpreter(f"sac-gru:{SHIPPED[name]}", n) == []


def test_qmix_policy_serves_without_the_training_stack(qmix_ckpt: Path) -> None:
    assert serve_in_fresh_interpreter(f"qmix:{qmix_ckpt}#lb=0", 16) == []


def test_the_serving_modules_import_no_training_stack() -> None:
    code = (
        "import sys, marllbd.policies, marllbd.policies.learned, marllbd.features, "
        "marllbd.checkpoint, marllbd.daemon.app; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN[:4]!r} "
        "or m.startswith(('marllbd.training', 'marllbd.envs'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- numpy serving = torch training networks ------------------------------------------------


def test_sac_gru_numpy_step_matches_the_torch_actor_on_the_shipped_checkpoint() -> None:
    """Over 30 recorded decisions (GRU state carried), to 1e-6."""
    torch = pytest.importorskip("torch")
    from marllbd_rl import sac_gru as S

    saved = checkpoint.load(SEED16, algorithm="sac-gru")
    cfg = S.SacGruConfig.from_pairs(saved.manifest["hyper"].items())
    agent = S.Learner(cfg, 16 * NUM_FEATURES, 16, seed=0)
    agent.load_arrays(saved.arrays, saved.path)
    served = sac_gru_from_checkpoint(SEED16)
    assert_sac_gru_agree(torch, agent, served, recorded_features("seed-16", 30))


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
def test_sac_gru_policy_of_live_networks_matches_the_torch_actor(action_type: str) -> None:
    """The policy training evaluates (from the live arrays) on perturbed networks."""
    torch = pytest.importorskip("torch")
    from marllbd_rl import sac_gru as S

    cfg = S.SacGruConfig(action_type=action_type, hidden=16)
    agent = S.Learner(cfg, 7 * NUM_FEATURES, 7, seed=3)
    feats = recorded_features("paper-7", 25)
    agent.norm.update(np.stack([f.reshape(-1) for f in feats]))
    gen = torch.Generator().manual_seed(5)  # the same perturbation whatever ran before
    with torch.no_grad():
        for p in agent.actor.parameters():
            p.normal_(0.0, 0.3, generator=gen)  # far from the neutral initialisation
    served = SacGruPolicy.from_arrays(agent.arrays(), S.manifest(cfg, agent.obs_dim, agent.n))
    weights = assert_sac_gru_agree(torch, agent, served, feats)
    caps = np.array([s.workers for s in load_scenario("paper-7").servers], dtype=np.float64)
    assert len({tuple(np.round(w / caps, 6)) for w in weights}) > 1  # not a constant action


def assert_sac_gru_agree(
    torch: Any, agent: Any, served: SacGruPolicy, feats: list[np.ndarray]
) -> list[np.ndarray]:
    n = served.num_servers
    caps = np.linspace(1.0, 4.0, n)
    served.reset(PolicyContext(num_servers=n, capacities=caps))
    spec = agent.cfg.action_spec()
    h = agent.initial_state(1)[0]
    weights = []
    for f in feats:
        with torch.no_grad():
            raw, h = agent.actor.step(agent.norm(torch.from_numpy(f.reshape(1, -1)).float()), h)
            expected = spec.weights(agent.actor.mode(raw)[0].numpy(), caps)
        got = served.decide(f, np.ones(n, bool), None)
        # float32 in two operation orders over 25 steps: a few ulps apart (1.01e-6 seen)
        np.testing.assert_allclose(served._h, h[0].numpy(), rtol=0, atol=3e-6)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
        weights.append(got)
    assert np.abs(h.numpy()).max() > 0.1  # the state did move
    return weights


@pytest.mark.parametrize("scenario", ["seed-16", "paper-7"])
def test_qmix_numpy_forward_matches_the_torch_agent_network(tmp_path: Path, scenario: str) -> None:
    """Each LB's agents (seed-16: 4 on one LB; paper-7: 1 on each of 2) over 25 recorded
    decisions (GRU states carried), to 1e-6, both from the checkpoint and from the live
    network (what training evaluates)."""
    torch = pytest.importorskip("torch")

    path, learner = save_qmix(tmp_path / "ckpt", scenario)
    manifest = json.loads((path / "manifest.json").read_text())
    layout = Layout.from_dict(manifest["layout"])
    n = layout.num_servers
    feats = recorded_features(scenario, 25)
    caps = np.linspace(1.0, 4.0, n)
    for lb in sorted(set(layout.lbs)):
        served = [
            qmix_from_checkpoint(path, lb),
            QMIXPolicy.from_arrays(learner.arrays(), manifest, lb),
        ]
        held = [a for a, owner in enumerate(layout.lbs) if owner == lb]
        ids = torch.eye(len(layout.agents))[held]
        h = torch.zeros(len(held), learner.dims.hidden)
        for p in served:
            p.reset(PolicyContext(n, caps))
        chosen = set()
        for f in feats:
            obs = np.zeros((len(held), 1, learner.dims.rows, NUM_FEATURES), np.float32)
            for j, a in enumerate(held):
                group = list(layout.groups[a])
                obs[j, 0, : len(group)] = f[group]
            with torch.no_grad():
                q, h = learner.agent(torch.from_numpy(obs), ids, h)
            levels = np.zeros(n, dtype=np.int64)
            for j, a in enumerate(held):
                group = list(layout.groups[a])
                levels[group] = q[j, 0, : len(group)].argmax(-1).numpy()
            chosen.update(levels.tolist())
            for p in served:
                w = p.decide(f, np.ones(n, bool), None)
                np.testing.assert_allclose(p._h, h.numpy(), rtol=0, atol=1e-6)
                np.testing.assert_array_equal(w, p.action.weights(levels, caps))
        assert len(chosen) > 1  # the agents' argmaxes differ by server and step


# -- the checkpoint schema ------------------------------------------------------------------


def test_save_and_load_round_trip_arrays_and_add_the_schema_keys(tmp_path: Path) -> None:
    arrays = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "count": np.array(3.0),  # 0-d stays 0-d
        "step": np.array([4], dtype=np.int64),
    }
    manifest = json.loads((SEED16 / "manifest.json").read_text())
    for key in ("format", "feature_names", "marllbd_version"):
        del manifest[key]
    out = checkpoint.save(tmp_path / "c", manifest, arrays)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "weights.safetensors"]
    loaded = checkpoint.load(out / "manifest.json", algorithm="sac-gru", dims={"hidden": 64})
    assert loaded.path == out and loaded.manifest["format"] == 2
    assert loaded.manifest["feature_names"] == list(FEATURE_NAMES)
    assert loaded.arrays.keys() == arrays.keys()
    for name, a in arrays.items():
        assert loaded.arrays[name].dtype == a.dtype and loaded.arrays[name].shape == a.shape
        np.testing.assert_array_equal(loaded.arrays[name], a)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m["progress"].update(best_fct=math.nan), "progress.best_fct: expected a finite"),
        (lambda m: m["action"].update(levels="1,2"), "action.levels: expected a list of numbers"),
        (lambda m: m.pop("reward"), "missing key 'reward'"),
        (lambda m: m.update(seed="0"), "seed: expected an integer"),
    ],
)
def test_save_refuses_what_load_would_refuse_and_writes_nothing(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], expected: str
) -> None:
    manifest = json.loads((SEED16 / "manifest.json").read_text())
    change(manifest)
    with pytest.raises(CheckpointError, match=expected):
        checkpoint.save(tmp_path / "c", manifest, {"x": np.zeros(2)})
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([1.0, np.nan]), "tensor 'x' holds non-finite values"),
        (np.array([1, 2], dtype=np.uint8), "tensor 'x': expected float32, float64 or int64"),
    ],
)
def test_save_refuses_bad_arrays(tmp_path: Path, array: np.ndarray, expected: str) -> None:
    manifest = json.loads((SEED16 / "manifest.json").read_text())
    with pytest.raises(CheckpointError, match=expected):
        checkpoint.save(tmp_path / "c", manifest, {"x": array})
    assert not (tmp_path / "c").exists()


MANIFEST_CASES: list[tuple[Callable[[dict[str, Any]], object], str]] = [
    (lambda m: m.pop("algorithm"), "manifest.json: missing key 'algorithm'"),
    (lambda m: m.pop("progress"), "manifest.json: missing key 'progress'"),
    (lambda m: m.update(format=1), r"format: expected 2, got 1 \(.*retrain the policy"),
    (lambda m: m.update(format=3), "format: expected 2, got 3 .not a format"),
    (lambda m: m.update(algorithm="qmix"), "algorithm: expected 'sac-gru', got 'qmix'"),
    (lambda m: m.update(feature_spec_version=999), "feature_spec_version: trained on 999.*retrain"),
    (lambda m: m["feature_names"].reverse(), "feature_spec_version: .*retrain"),
    (lambda m: m["dims"].update(hidden="64"), "dims.hidden: expected an integer >= 0"),
    (lambda m: m["action"].pop("spread"), "action.spread: expected a finite number, got None"),
    (lambda m: m["action"].update(type="sideways"), "action: .*action_type: expected one of"),
    (lambda m: m["progress"].update(steps=-1), "progress.steps: expected an integer >= 0"),
    (lambda m: m.update(eval={"fct_mean": 0.1}), "eval.fct_p90: expected a finite number"),
    (lambda m: m.update(layout=[]), "layout: expected an object or null"),
    (lambda m: m["reward"].pop("metric"), "reward.metric: expected a string"),
    # Caught by the policy, not the schema: the arrays do not fit these dims.
    (
        lambda m: m["dims"].update(hidden=32),
        r"tensor 'actor.encode.weight': expected \S+ \(32, 192\)",
    ),
    (lambda m: m["dims"].update(num_servers=4), "dims: expected .*obs_dim = num_servers"),
    (lambda m: m["dims"].update(num_levels=3), "dims.num_levels: expected 0 for a continuous"),
    (lambda m: m["hyper"].pop("feature_clip"), "manifest key 'hyper.feature_clip': missing"),
]


@pytest.mark.parametrize(("change", "expected"), MANIFEST_CASES)
def test_load_refuses_a_bad_manifest_naming_file_and_key(
    ckpt: Path, change: Callable[[dict[str, Any]], object], expected: str
) -> None:
    edit_manifest(ckpt, change)
    with pytest.raises(PolicyError, match=expected) as info:
        load(f"sac-gru:{ckpt}")
    assert str(info.value).startswith(f"sac-gru: {ckpt}")  # the file named first


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": NaN}', "not valid JSON .NaN is not a JSON number"),
        ("[1, 2]", "expected a JSON object, got list"),
        (b"\xff\xfe{", "not valid JSON"),
        ('{"format": 1}', "missing key 'algorithm'"),
    ],
)
def test_load_refuses_an_unreadable_manifest(ckpt: Path, text: str | bytes, expected: str) -> None:
    mpath = ckpt / "manifest.json"
    if isinstance(text, bytes):
        mpath.write_bytes(text)
    else:
        mpath.write_text(text)
    with pytest.raises(CheckpointError, match=f"{mpath}: {expected}"):
        checkpoint.load(ckpt)


@pytest.mark.parametrize("name", ["manifest.json", "weights.safetensors"])
def test_load_refuses_a_directory_missing_a_file(ckpt: Path, name: str) -> None:
    (ckpt / name).unlink()
    with pytest.raises(CheckpointError, match="expected a checkpoint directory with manifest"):
        checkpoint.load(ckpt)
    with pytest.raises(PolicyError, match=r"sac-gru: .*expected a checkpoint directory"):
        load_sac_gru(str(ckpt))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "header"])
def test_load_refuses_a_corrupt_weights_file(ckpt: Path, damage: str) -> None:
    weights = ckpt / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {
            "truncate": data[: len(data) // 2],
            "garbage": b"\x00" * 64,
            "empty": b"",
            "header": data[:100],
        }[damage]
    )
    with pytest.raises(CheckpointError, match=f"{weights}: corrupt or truncated safetensors"):
        checkpoint.load(ckpt)


def test_load_refuses_an_unreadable_weights_file(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = ckpt / "weights.safetensors"
    real_open = open

    def deny(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == weights:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(CheckpointError, match=f"{weights}: cannot read .Permission denied"):
        checkpoint.load(ckpt)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda a: a["norm.m2"].__setitem__(3, np.inf), "tensor 'norm.m2' holds non-finite"),
        (lambda a: a.update(x=np.zeros(2, np.float16)), "tensor 'x': expected float32, float64"),
        (lambda a: a.pop("actor.head.bias"), "tensor 'actor.head.bias': missing"),
        (lambda a: a.update({"actor.gru.bias_hh_l0": np.zeros(7, np.float32)}),
         r"tensor 'actor.gru.bias_hh_l0': expected float32 \(192,\), got float32 \(7,\)"),
    ],
)  # fmt: skip
def test_load_refuses_bad_arrays(
    ckpt: Path, change: Callable[[dict[str, np.ndarray]], object], expected: str
) -> None:
    weights = ckpt / "weights.safetensors"
    arrays = dict(load_file(str(weights)))
    change(arrays)
    save_file(arrays, str(weights))  # behind save's back: save refuses these itself
    with pytest.raises(PolicyError, match=f"sac-gru: {weights}: {expected}"):
        load_sac_gru(str(ckpt))


def test_load_checks_dims_when_asked(ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match=r"manifest.json: dims\.hidden: expected 16, got 64"):
        checkpoint.load(ckpt, algorithm="sac-gru", dims={"hidden": 16, "obs_dim": 192})


# -- the SAC-GRU policy ---------------------------------------------------------------------


def test_sac_gru_policy_is_a_bounded_policy_with_its_errors(ckpt: Path) -> None:
    policy = load(f"sac-gru:{ckpt}")
    assert isinstance(policy, SacGruPolicy) and isinstance(policy, Policy)
    assert policy.dispatch == "sed" and policy.bounded and not policy.needs_ground_truth
    with pytest.raises(PolicyError, match="call reset"):
        policy.decide(np.zeros((16, 12)), np.ones(16, bool), None)
    with pytest.raises(PolicyError, match="trained for 16 servers, the data plane has 4"):
        policy.reset(PolicyContext(num_servers=4, capacities=np.ones(4)))
    policy.reset(PolicyContext(num_servers=16, capacities=np.ones(16)))
    with pytest.raises(PolicyError, match=r"features: expected shape \(16, 12\), got \(7, 12\)"):
        policy.decide(np.zeros((7, 12)), np.ones(7, bool), None)
    with pytest.raises(PolicyError, match="sac-gru: expected a checkpoint directory"):
        load("sac-gru")


def test_sac_gru_warm_leaves_no_trace_and_reset_restarts(ckpt: Path) -> None:
    policy = sac_gru_from_checkpoint(ckpt)
    feats = recorded_features("seed-16", 6)
    runs = []
    for _ in range(2):
        policy.reset(PolicyContext(16, np.linspace(1, 4, 16)))
        run = []
        for f in feats:
            policy.warm(f * 3.0, np.ones(16, bool))
            run.append(policy.decide(f, np.ones(16, bool), None))
        runs.append(run)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][0], runs[0][-1])


def test_sac_gru_without_feature_statistics_normalises_by_the_identity(ckpt: Path) -> None:
    """RunningNorm.refresh leaves shift 0 and scale 1 until it has seen two rows."""
    arrays = dict(load_file(str(ckpt / "weights.safetensors")))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    zero = {**arrays, "norm.count": np.array(1.0)}
    policy = SacGruPolicy.from_arrays(zero, manifest)
    np.testing.assert_array_equal(policy._shift, 0.0)
    np.testing.assert_array_equal(policy._scale, 1.0)


# -- the QMIX policy ------------------------------------------------------------------------


def test_qmix_policy_exposes_its_agents_servers_and_errors(qmix_ckpt: Path) -> None:
    policy = load(f"qmix:{qmix_ckpt}")
    assert isinstance(policy, QMIXPolicy) and policy.bounded and policy.lb == 0
    assert policy.agents == ("lb0_g0", "lb0_g1", "lb0_g2", "lb0_g3")
    assert [list(s) for s in policy.server_indices] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]
    ]  # fmt: skip
    assert load_qmix(f"{qmix_ckpt}#lb=0").agents == policy.agents
    with pytest.raises(PolicyError, match="no agent of this checkpoint runs on LB 1"):
        load_qmix(f"{qmix_ckpt}#lb=1")
    with pytest.raises(PolicyError, match="lb=N"):
        load_qmix(f"{qmix_ckpt}#lbx")
    with pytest.raises(PolicyError, match="qmix: give a checkpoint directory"):
        load_qmix(None)
    with pytest.raises(PolicyError, match="reset"):
        policy.decide(np.zeros((16, 12)), np.ones(16, bool), None)
    with pytest.raises(PolicyError, match="trained for 16 servers, the data plane has 7"):
        policy.reset(PolicyContext(7, np.ones(7)))
    policy.reset(PolicyContext(16, np.ones(16)))
    with pytest.raises(PolicyError, match="features"):
        policy.decide(np.zeros((7, 12)), np.ones(7, bool), None)


def test_qmix_warm_leaves_no_trace_and_reset_restarts(qmix_ckpt: Path) -> None:
    policy = qmix_from_checkpoint(qmix_ckpt)
    feats = recorded_features("seed-16", 6)
    runs = []
    for _ in range(2):
        policy.reset(PolicyContext(16, np.linspace(1, 4, 16)))
        run = []
        for f in feats:
            policy.warm(f * 3.0, np.ones(16, bool))
            policy.decide(f, np.ones(16, bool), None)
            run.append(policy._h.copy())
        runs.append(run)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][0], runs[0][-1])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m.update(layout=None), "manifest lacks QMIX fields"),
        (lambda m: m["layout"].pop("groups"), "manifest lacks QMIX fields"),
        (lambda m: m["dims"].update(n_agents=3), "layout: expected 3 agents"),
        (lambda m: m["action"].update(type="continuous"), "action: expected 3 discrete levels"),
        (lambda m: m["hyper"].pop("norm_clip"), "'hyper.norm_clip': missing"),
        (lambda m: m["dims"].update(hidden=8), r"tensor 'agent.fc.weight': expected"),
    ],
)
def test_qmix_refuses_a_manifest_that_does_not_fit(
    qmix_ckpt: Path, tmp_path: Path, change: Callable[[dict[str, Any]], object], expected: str
) -> None:
    path = Path(shutil.copytree(qmix_ckpt, tmp_path / "q"))
    edit_manifest(path, change)
    with pytest.raises(CheckpointError, match=expected):
        qmix_from_checkpoint(path)
    with pytest.raises(PolicyError, match=f"qmix: {path}"):
        load(f"qmix:{path}")


def test_qmix_refuses_a_checkpoint_of_another_algorithm() -> None:
    with pytest.raises(PolicyError, match=r"qmix: .*algorithm: expected 'qmix', got 'sac-gru'"):
        load_qmix(f"{SEED16}#lb=0")
