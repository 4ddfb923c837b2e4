"""Checkpoints: exact round trips, `evorl_cli.load`, refusal of bad files, atomic writes, exact resume."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import os
import pathlib
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from rich.console import Console
from safetensors.torch import save_file as st_save_file

import evorl_cli
from evorl_cli import checkpoint
from evorl_cli.checkpoint import FORMAT_VERSION, META_KEY, population_payload, restore_population
from evorl_cli.cli import resumed_config
from evorl_cli.config import MUTABLE_HPS, build_train_config
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.errors import EvorlError
from evorl_cli.evolve.mutate import Mutator
from evorl_cli.nets.policy import ActionSpec
from evorl_cli.population import Population
from evorl_cli.ppo import ppo_update
from evorl_cli.rollout import members_first
from evorl_cli.rollout import RolloutCollector
from evorl_cli.train import train

CPU = torch.device("cpu")

# 2 members x 2 envs x 32 steps = 128 env steps per rollout; evo_steps=64 -> 1 rollout per generation.
TINY = {
    "seed": 0,
    "max_steps": 512,
    "device": "cpu",
    "progress": False,
    "population": {"size": 2},
    "env": {"name": "cartpole", "id": "CartPole-v1", "num_envs": 2, "backend": "gymnasium"},
    "algo": {"rollout_steps": 32, "batch_size": 32, "normalize_obs": True},
    "evolution": {"evo_steps": 64, "selection_episodes": 2, "confirm_episodes": 4, "eval_max_steps": 50},
    "hp_config": {"lr": {"min": 1e-4, "max": 1e-2},
                  "batch_size": {"min": 16, "max": 64},
                  "ent_coef": {"min": 0.0, "max": 0.05}},
}
PENDULUM_ENV = {"name": "pendulum", "id": "Pendulum-v1", "num_envs": 2, "backend": "gymnasium"}
BITS_ENV = {"name": "bits", "id": "space_envs:MatchBits-v0", "num_envs": 2, "backend": "gymnasium"}  # MultiDiscrete


def tiny(**overrides) -> dict:
    """TINY with nested overrides merged in (`env={...}` replaces keys inside env)."""
    cfg = copy.deepcopy(TINY)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def quiet() -> Console:
    return Console(quiet=True)


def config_doc(config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(config))


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def assert_one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(exc.value)
    assert message.strip(), "empty error message"
    assert "\n" not in message, f"error message is not one line: {message!r}"
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished tiny run (4 generations) with observation normalisation and RL-hp mutation."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = train(build_train_config(tiny()), run_dir, quiet())
    assert result.generations == 4
    return run_dir


# --- exact round trip -----------------------------------------------------------------------------

def make_trained_population(cfg: dict) -> tuple[Population, object]:
    """A population that has really trained (non-trivial Adam and normaliser state) and whose members
    differ in architecture, activation and hyperparameters."""
    config = build_train_config(cfg)
    size, num_envs = config.population.size, config.env.num_envs
    env = EnvBatch(config.env, size * num_envs)
    gen = torch.Generator()
    gen.manual_seed(123)
    pop = Population.create(config, env.obs_dim, env.action, CPU, gen)
    collector = RolloutCollector(env, size, num_envs, config.algo.rollout_steps, CPU)
    collector.reset(0)
    rng = np.random.default_rng(0)

    def learn() -> None:
        rollout = collector.collect(pop, gen)
        ppo_update(pop, rollout, config.algo, gen)
        pop.obs_norm.update(members_first(rollout.raw_obs))

    learn()
    only = dict(no_mutation=0.0, parameters=0.0, architecture=0.0, activation=0.0, rl_hp=0.0)
    for kind, extra in (("architecture", {"new_layer_prob": 0.5}), ("activation", {}), ("rl_hp", {})):
        mcfg = dataclasses.replace(config.mutation, **{**only, kind: 1.0, **extra})
        Mutator.for_run(dataclasses.replace(config, mutation=mcfg), rng, gen).mutate(pop, protected=set())
    learn()
    env.close()

    # The state being compared must not be trivial, or the test proves nothing.
    assert (pop.adam.steps > 0).all() and pop.adam.exp_avg.abs().sum() > 0
    assert (pop.obs_norm.count > 0).all() and pop.obs_norm.enabled
    assert not np.array_equal(pop.arch.widths[0], [64, 64, 0, 0]) or not np.array_equal(
        pop.arch.widths[1], [64, 64, 0, 0])
    assert any(pop.hp[k][p] != getattr(config.algo, k) for k in config.hp_config for p in range(size))
    return pop, config


@pytest.mark.parametrize("env", [None, PENDULUM_ENV, BITS_ENV],
                         ids=["cartpole-discrete", "pendulum-continuous", "bits-multi-discrete"])
def test_round_trip_is_exact(tmp_path, env):
    cfg = tiny() if env is None else tiny(env=env)
    pop, config = make_trained_population(cfg)
    tensors, meta = population_payload(pop)
    path = tmp_path / "pop.safetensors"
    checkpoint.save(path, tensors, {**meta, "kind": "population", "config": config_doc(config)})

    ckpt = checkpoint.load(path)
    assert ckpt.meta["format_version"] == FORMAT_VERSION
    restored = restore_population(ckpt, ckpt.config, CPU)

    # Parameters, optimiser and normaliser state: bit for bit.
    assert torch.equal(restored.params.detach(), pop.params.detach())
    assert torch.equal(restored.adam.exp_avg, pop.adam.exp_avg)
    assert torch.equal(restored.adam.exp_avg_sq, pop.adam.exp_avg_sq)
    assert torch.equal(restored.adam.steps, pop.adam.steps)
    assert restored.obs_norm.enabled == pop.obs_norm.enabled
    assert torch.equal(restored.obs_norm.mean, pop.obs_norm.mean)
    assert torch.equal(restored.obs_norm.var, pop.obs_norm.var)
    assert torch.equal(restored.obs_norm.count, pop.obs_norm.count)

    # Architecture, hyperparameters (values and integer-ness), action spec.
    assert np.array_equal(restored.arch.widths, pop.arch.widths)
    assert np.array_equal(restored.arch.activation, pop.arch.activation)
    assert set(restored.hp) == set(pop.hp) == set(MUTABLE_HPS)
    for name in pop.hp:
        assert np.array_equal(restored.hp[name], pop.hp[name]), name
        assert restored.hp[name].dtype.kind == pop.hp[name].dtype.kind, name
    assert restored.net.num_params == pop.net.num_params
    assert restored.net.action.discrete == pop.net.action.discrete and restored.net.action.n == pop.net.action.n
    assert restored.net.action.nvec == pop.net.action.nvec
    if not pop.net.action.discrete:
        assert np.array_equal(restored.net.action.low, pop.net.action.low)
        assert np.array_equal(restored.net.action.high, pop.net.action.high)

    # Behaviour: same actions (deterministic, and sampled from equally seeded generators), log-probs, values.
    obs = torch.randn(pop.size, 64, pop.net.obs_dim, generator=torch.Generator().manual_seed(5)) * 3
    for deterministic in (True, False):
        g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        a, b = pop.act(obs, g1, deterministic), restored.act(obs, g2, deterministic)
        assert torch.equal(a.action, b.action)
        assert torch.equal(a.logp, b.logp)
        assert torch.equal(a.value, b.value)
    if not deterministic and pop.net.action.discrete:
        assert len(torch.unique(a.action)) > 1  # sampling really drew
    head_a, value_a, _ = pop.forward_normalized(pop.obs_norm(obs))
    head_b, value_b, _ = restored.forward_normalized(restored.obs_norm(obs))
    assert torch.equal(head_a, head_b) and torch.equal(value_a, value_b)

    # save -> load -> save reproduces the same payload.
    tensors2, meta2 = population_payload(restored)
    assert tensors2.keys() == tensors.keys()
    for key in tensors:
        assert torch.equal(tensors2[key], tensors[key]), key
    assert meta2 == meta


def test_latest_checkpoint_of_a_run_restores(trained_run):
    ckpt = checkpoint.load(trained_run, prefer="latest")
    assert ckpt.path == trained_run / "checkpoints" / "latest.safetensors"
    assert ckpt.meta["kind"] == "population" and ckpt.meta["state"]["generation"] == 4
    pop = restore_population(ckpt, ckpt.config, CPU)
    assert pop.size == 2
    assert torch.equal(pop.params.detach(), ckpt.tensors["params"])
    assert (pop.obs_norm.count > 0).all()
    for p, member in enumerate(ckpt.meta["members"]):
        assert len(member["fitness_history"]) == 4
        assert member["hidden_sizes"] == pop.arch.hidden_sizes(p)
        assert member["hyperparameters"] == pop.hyperparameters(p)


# --- evorl_cli.load -------------------------------------------------------------------------------

def real_observations(n: int) -> np.ndarray:
    env = gym.make("CartPole-v1")
    rows = []
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    while len(rows) < n:
        rows.append(obs)
        obs, _, term, trunc, _ = env.step(int(rng.integers(2)))
        if term or trunc:
            obs, _ = env.reset(seed=len(rows))
    env.close()
    return np.asarray(rows, dtype=np.float32)


def test_load_agent_matches_best_member(trained_run):
    agent = evorl_cli.load(trained_run)
    best = checkpoint.load(trained_run)  # default: the best-member file
    assert best.path.name == "best.safetensors" and best.meta["kind"] == "best"
    pop = restore_population(best, best.config, CPU)
    assert pop.size == 1

    obs = np.concatenate([real_observations(40),
                          np.random.default_rng(1).normal(0, 2, (24, 4)).astype(np.float32)])
    expected = pop.act(torch.as_tensor(obs).unsqueeze(0), torch.Generator().manual_seed(0), True).action[0].numpy()

    actions, state = agent.act(obs)
    assert state is None
    assert actions.shape == (len(obs),)
    assert np.array_equal(actions, expected)
    assert set(np.unique(actions)) <= {0, 1}

    space = gym.make("CartPole-v1").action_space
    for i in (0, 7, 50):
        action, state = agent.act(obs[i])
        assert np.ndim(action) == 0, "a single observation must give a single action"
        assert action == expected[i]
        assert space.contains(int(action))
    # a list of floats works like an array
    assert agent.act(obs[3].tolist())[0] == expected[3]


def test_load_agent_member_index_uses_latest_population(trained_run):
    latest = checkpoint.load(trained_run, prefer="latest")
    obs = real_observations(32)
    for member in range(2):
        pop = restore_population(latest, latest.config, CPU)
        pop.gather(np.array([member]))
        expected = pop.act(torch.as_tensor(obs).unsqueeze(0), torch.Generator(), True).action[0].numpy()
        actions, _ = evorl_cli.load(trained_run, member=member).act(obs)
        assert np.array_equal(actions, expected)
    with pytest.raises(EvorlError) as exc:
        evorl_cli.load(trained_run, member=2)
    assert_one_line(exc, "member=2", "0..1")


def test_load_accepts_file_run_dir_and_checkpoints_dir(trained_run):
    files = {checkpoint.load(p).path for p in (trained_run, trained_run / "checkpoints")}
    assert files == {trained_run / "checkpoints" / "best.safetensors"}
    direct = trained_run / "checkpoints" / "latest.safetensors"
    assert checkpoint.load(direct).path == direct


# --- bad inputs -----------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(EvorlError) as exc:
        checkpoint.load(tmp_path / "no" / "such" / "run")
    assert_one_line(exc, "no such file or directory", str(tmp_path / "no" / "such" / "run"))
    with pytest.raises(EvorlError):
        evorl_cli.load(tmp_path / "nothing.safetensors")


def test_directory_without_checkpoints(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "metrics.csv").write_text("generation\n")
    with pytest.raises(EvorlError) as exc:
        checkpoint.load(tmp_path)
    assert_one_line(exc, "no checkpoint", str(tmp_path))


def test_truncated_checkpoint(tmp_path, trained_run):
    data = (trained_run / "checkpoints" / "latest.safetensors").read_bytes()
    for cut in (len(data) // 2, 100, 7):
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(EvorlError) as exc:
            checkpoint.load(path)
        assert_one_line(exc, str(path), "not a readable evorl checkpoint")
        with pytest.raises(EvorlError):
            evorl_cli.load(path)


def test_random_bytes_and_empty_file(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(EvorlError) as exc:
        checkpoint.load(path)
    assert_one_line(exc, str(path), "not a readable evorl checkpoint")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(EvorlError):
        checkpoint.load(empty)


class _Booby:
    """Unpickling this object creates a marker file: proof that a loader ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.safetensors"
    with open(path, "wb") as fh:
        pickle.dump({"params": _Booby(marker), "evorl": "{}"}, fh)
    # The same payload written with torch.save (a zip of pickles), also renamed.
    zipped = tmp_path / "evil_torch.safetensors"
    torch.save({"params": _Booby(marker)}, zipped)

    # Sanity: the payload is live (unpickling a copy aimed elsewhere does create its marker).
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Booby(control)))
    assert control.exists()

    for bad in (path, zipped):
        with pytest.raises(EvorlError) as exc:
            checkpoint.load(bad)
        assert_one_line(exc, str(bad))
        with pytest.raises(EvorlError):
            evorl_cli.load(bad)
        assert not marker.exists(), "loading a checkpoint ran pickle code"


def test_safetensors_without_evorl_metadata(tmp_path):
    plain = tmp_path / "plain.safetensors"
    st_save_file({"params": torch.zeros(2, 3)}, str(plain))
    other = tmp_path / "other.safetensors"
    st_save_file({"weight": torch.ones(4)}, str(other), metadata={"format": "pt"})
    for path in (plain, other):
        with pytest.raises(EvorlError) as exc:
            checkpoint.load(path)
        assert_one_line(exc, str(path), "not an evorl checkpoint")


def _rewrite_meta(src: Path, dst: Path, document: str) -> None:
    ckpt = checkpoint.load(src)
    st_save_file(ckpt.tensors, str(dst), metadata={META_KEY: document})


def test_newer_format_version(tmp_path, trained_run):
    src = trained_run / "checkpoints" / "best.safetensors"
    meta = checkpoint.load(src).meta
    newer = tmp_path / "newer.safetensors"
    _rewrite_meta(src, newer, json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(EvorlError) as exc:
        checkpoint.load(newer)
    assert_one_line(exc, str(newer), f"format {FORMAT_VERSION + 1}", "newer", "upgrade")
    with pytest.raises(EvorlError):
        evorl_cli.load(newer)

    # Same tensors, current version: loads, so the refusal above is about the version alone.
    same = tmp_path / "same.safetensors"
    _rewrite_meta(src, same, json.dumps(meta))
    assert checkpoint.load(same).meta == meta

    for bad_version in (None, "1", 1.5):
        odd = tmp_path / f"odd{bad_version}.safetensors"
        doc = {k: v for k, v in meta.items() if k != "format_version"}
        if bad_version is not None:
            doc["format_version"] = bad_version
        _rewrite_meta(src, odd, json.dumps(doc))
        with pytest.raises(EvorlError):
            checkpoint.load(odd)


def test_corrupt_metadata_json(tmp_path, trained_run):
    path = tmp_path / "badjson.safetensors"
    _rewrite_meta(trained_run / "checkpoints" / "best.safetensors", path, '{"format_version": 1, ')
    with pytest.raises(EvorlError) as exc:
        checkpoint.load(path)
    assert_one_line(exc, str(path), "metadata")


def test_parameters_not_matching_the_described_network(tmp_path, trained_run):
    ckpt = checkpoint.load(trained_run / "checkpoints" / "best.safetensors")
    tensors = dict(ckpt.tensors)
    tensors["params"] = tensors["params"][:, :-3].contiguous()
    path = tmp_path / "shape.safetensors"
    st_save_file(tensors, str(path), metadata={META_KEY: json.dumps(ckpt.meta)})
    with pytest.raises(EvorlError) as exc:
        evorl_cli.load(path)
    assert_one_line(exc, str(path), "do not match")


# --- atomic write ---------------------------------------------------------------------------------

def _small_payload(seed: int) -> tuple[dict, dict]:
    config = build_train_config(tiny())
    gen = torch.Generator().manual_seed(seed)
    pop = Population.create(config, 4, ActionSpec(True, 2), CPU, gen)
    tensors, meta = population_payload(pop)
    return tensors, {**meta, "kind": "population", "config": config_doc(config)}


@pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["oserror", "interrupt"])
def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch, failure):
    folder = tmp_path / "checkpoints"
    path = folder / "latest.safetensors"
    old_tensors, old_meta = _small_payload(1)
    checkpoint.save(path, old_tensors, old_meta)
    before = path.read_bytes()
    written = []

    def broken_save_file(tensors, filename, metadata=None):
        written.append(filename)
        Path(filename).write_bytes(b"\x00garbage" * 1000)  # half a file on disk, then the failure
        raise failure

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    new_tensors, new_meta = _small_payload(2)
    assert not torch.equal(new_tensors["params"], old_tensors["params"])
    expected = EvorlError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        checkpoint.save(path, new_tensors, new_meta)
    if expected is EvorlError:  # one line: the path, the cause, what is kept
        assert_one_line(info, f"could not write checkpoint {path}: No space left on device",
                        "the previous latest.safetensors is intact")

    assert written and Path(written[0]) != path, "save must write to a temporary name first"
    assert path.read_bytes() == before
    ckpt = checkpoint.load(path)
    assert torch.equal(ckpt.tensors["params"], old_tensors["params"])
    assert sorted(p.name for p in folder.iterdir()) == ["latest.safetensors"], "a temp file was left behind"

    # A first-ever save that fails leaves nothing behind either.
    with pytest.raises(expected):
        checkpoint.save(folder / "best.safetensors", new_tensors, new_meta)
    assert sorted(p.name for p in folder.iterdir()) == ["latest.safetensors"]

    # And once writing works again, the new checkpoint replaces the old one.
    monkeypatch.undo()
    checkpoint.save(path, new_tensors, new_meta)
    assert torch.equal(checkpoint.load(path).tensors["params"], new_tensors["params"])
    assert sorted(p.name for p in folder.iterdir()) == ["latest.safetensors"]


# --- resume equivalence ---------------------------------------------------------------------------

# evo_steps=128 -> 2 rollouts of 128 env steps per generation = 256 env steps per generation.
# The batched NumPy CartPole: its state is saved, so the training envs resume mid-episode exactly.
RESUME_CFG = tiny(evolution={"evo_steps": 128}, env={"backend": "numpy"})
GRU_NET = {"name": "gru", "recurrent": "gru", "hidden_size": 8, "hidden_sizes": [16]}


def _rows_without_wall_time(path: Path) -> list[dict]:
    rows = read_rows(path)
    for row in rows:
        assert float(row.pop("wall_time")) >= float(row.pop("eval_time")) >= 0
        assert float(row.pop("train_steps_per_s")) > 0  # a timing, like wall_time
    return rows


@pytest.mark.parametrize("net", [None, GRU_NET], ids=["mlp", "gru"])
def test_resume_is_equivalent_to_running_straight_through(tmp_path, net):
    """Training envs carry on across generations (mid-episode at every boundary, with recurrent
    state): the checkpoint holds them, so a resumed run equals an uninterrupted one."""
    cfg = RESUME_CFG if net is None else {**RESUME_CFG, "net": net}
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    result_a = train(build_train_config({**cfg, "max_steps": 1024}), run_a, quiet())
    assert result_a.generations == 4 and result_a.env_steps == 1024

    result_b1 = train(build_train_config({**cfg, "max_steps": 512}), run_b, quiet())
    assert result_b1.generations == 2 and result_b1.env_steps == 512
    ckpt = checkpoint.load(run_b, prefer="latest")
    assert ckpt.meta["state"]["generation"] == 2
    config = resumed_config(ckpt.meta["config"], ["max_steps=1024"])
    assert config.max_steps == 1024
    result_b2 = train(config, run_b, quiet(), resume=ckpt)
    assert result_b2.generations == 4 and result_b2.env_steps == 1024
    assert result_b2.best_score == result_a.best_score
    # The confirmed best and every confirmation survive the resume.
    assert result_b2.best == result_a.best and result_a.best is not None

    for name in ("latest", "best"):
        a = checkpoint.load(run_a / "checkpoints" / f"{name}.safetensors")
        b = checkpoint.load(run_b / "checkpoints" / f"{name}.safetensors")
        assert a.tensors.keys() == b.tensors.keys()
        for key in a.tensors:
            assert torch.equal(a.tensors[key], b.tensors[key]), f"{name}: {key} differs"
        meta_a, meta_b = copy.deepcopy(a.meta), copy.deepcopy(b.meta)
        for meta in (meta_a, meta_b):
            meta.get("state", {}).pop("wall_time", None)
            meta.get("state", {}).pop("eval_time", None)
            # best.safetensors may date from B's first leg, written under that leg's budget.
            meta["config"].pop("max_steps")
        assert meta_a == meta_b, name

    rows_a = _rows_without_wall_time(run_a / "metrics.csv")
    rows_b = _rows_without_wall_time(run_b / "metrics.csv")
    assert len(rows_a) == 4 * 2
    assert rows_a == rows_b


def test_resume_with_envs_that_cannot_save_their_state_says_so(tmp_path):
    """Gymnasium's vector envs (Box2D, MuJoCo, Atari...) cannot be saved: a resumed run restarts
    their episodes and prints that it will not match an uninterrupted run step for step."""
    run = tmp_path / "run"
    cfg = tiny(evolution={"evo_steps": 128})  # backend=gymnasium
    train(build_train_config({**cfg, "max_steps": 256}), run, quiet())
    ckpt = checkpoint.load(run, prefer="latest")
    assert ckpt.meta["collector"]["env"] is None
    console = Console(record=True, width=200, file=io.StringIO())
    train(resumed_config(ckpt.meta["config"], ["max_steps=512"]), run, console, resume=ckpt)
    assert "cannot save their state, so they start fresh episodes" in console.export_text()


def test_resume_rejects_changes_that_make_another_run(trained_run):
    saved = checkpoint.load(trained_run, prefer="latest").meta["config"]
    for override in ("algo.lr=0.5", "population.size=8", "env.num_envs=3", "seed=3"):
        with pytest.raises(EvorlError) as exc:
            resumed_config(saved, [override])
        assert_one_line(exc, "cannot change when resuming")
    for override in ("env=acrobot", "env.id=Acrobot-v1"):  # another env: both are named
        with pytest.raises(EvorlError) as exc:
            resumed_config(saved, [override])
        assert_one_line(exc, f"holds a run on CartPole-v1, not on Acrobot-v1 ({override})")
    assert resumed_config(saved, ["evolution.selection_episodes=3"]).evolution.selection_episodes == 3


def test_resume_after_interrupt_between_metrics_and_checkpoint(tmp_path, monkeypatch):
    """An interrupt after a generation's metrics rows are written but before its checkpoint is saved
    must not leave that generation twice in metrics.csv once the run is resumed."""
    import evorl_cli.train as train_module

    real_save_run = train_module._save_run
    calls = []

    def save_run_then_interrupt(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # 1: initial checkpoint; 2: end of generation 0 (its metrics already written)
            raise KeyboardInterrupt
        return real_save_run(path, *args, **kwargs)

    monkeypatch.setattr(train_module, "_save_run", save_run_then_interrupt)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(build_train_config({**RESUME_CFG, "max_steps": 1024}), run, quiet())
    monkeypatch.undo()

    ckpt = checkpoint.load(run, prefer="latest")
    assert ckpt.meta["state"]["generation"] == 0
    train(resumed_config(ckpt.meta["config"], []), run, quiet(), resume=ckpt)
    rows = read_rows(run / "metrics.csv")
    keys = [(row["generation"], row["member"]) for row in rows]
    assert len(keys) == len(set(keys)), f"duplicate metrics rows after resume: {keys}"


def test_resume_continues_the_lr_schedule_exactly(tmp_path, monkeypatch):
    """algo.lr_schedule=linear anneals by the run's training steps, which the checkpoint holds: a run
    interrupted after generation 1 and resumed equals one that ran straight through, and the
    annealing acted (the run differs from a constant-lr one)."""
    import evorl_cli.train as train_module

    cfg = {**RESUME_CFG, "max_steps": 1024, "algo": {**RESUME_CFG.get("algo", {}), "lr_schedule": "linear"}}
    straight = train(build_train_config(cfg), tmp_path / "a", quiet())
    constant = train(build_train_config({**cfg, "algo": {**cfg["algo"], "lr_schedule": "constant"}}),
                     tmp_path / "c", quiet())

    real_save_run = train_module._save_run
    calls = []

    def save_run_then_interrupt(path, *args, **kwargs):
        real_save_run(path, *args, **kwargs)
        calls.append(path)
        if len(calls) == 3:  # 1: initial checkpoint; 2, 3: ends of generations 0 and 1
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_run", save_run_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(build_train_config(cfg), tmp_path / "b", quiet())
    monkeypatch.undo()
    ckpt = checkpoint.load(tmp_path / "b", prefer="latest")
    assert ckpt.meta["state"]["generation"] == 2
    resumed = train(resumed_config(ckpt.meta["config"], []), tmp_path / "b", quiet(), resume=ckpt)
    assert resumed.env_steps == straight.env_steps == 1024
    a = checkpoint.load(tmp_path / "a" / "checkpoints" / "latest.safetensors")
    b = checkpoint.load(tmp_path / "b" / "checkpoints" / "latest.safetensors")
    c = checkpoint.load(tmp_path / "c" / "checkpoints" / "latest.safetensors")
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key]), f"{key} differs after resume"
    assert not torch.equal(a.tensors["params"], c.tensors["params"])
    assert _rows_without_wall_time(tmp_path / "a" / "metrics.csv") == _rows_without_wall_time(tmp_path / "b" / "metrics.csv")
    assert constant.env_steps == 1024


def test_load_builds_observations_as_the_run_did(tmp_path):
    """A run whose env needs a wrapper (Blackjack's Tuple observation, flattened) loads and acts."""
    import gymnasium as gym

    config = build_train_config({
        "env": {"name": "blackjack", "id": "Blackjack-v1", "num_envs": 2, "backend": "gymnasium",
                "wrappers": [{"_target_": "gymnasium.wrappers.FlattenObservation"}]},
        "population": {"size": 2}, "algo": {"rollout_steps": 16, "batch_size": 16},
        "evolution": {"evo_steps": 32, "selection_episodes": 2, "confirm_episodes": 4}, "max_steps": 64, "progress": False})
    train(config, tmp_path, Console(quiet=True))
    agent = evorl_cli.load(tmp_path)
    env = gym.wrappers.FlattenObservation(gym.make("Blackjack-v1"))
    obs, _ = env.reset(seed=0)
    action, state = agent.act(obs)
    assert env.action_space.contains(int(action)) and state is None


def test_resume_on_another_device_reseeds_sampling_instead_of_failing():
    from evorl_cli.train import Generators

    saved = Generators(0, torch.device("cpu"))
    meta, tensors = saved.state()
    tensors = dict(tensors, **{"rng.torch": torch.zeros(16, dtype=torch.uint8)})  # a CUDA-sized state
    fresh = Generators(0, torch.device("cpu"))
    assert fresh.load_state(meta, tensors, seed=0, generation=3) is False
    assert fresh.load_state(*saved.state(), seed=0, generation=3) is True
