"""Faults a run survives or reports in one line, keeping its last good checkpoint: a failed or
interrupted checkpoint write, an env that raises or returns NaN, a member whose training diverges."""

from __future__ import annotations

import csv
import errno
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DISCRETE, TINY_RUN, NarrowNet, varied_population
from rich.console import Console
from safetensors import SafetensorError

import faulty_env  # noqa: F401  registers Faulty-v0
import evorl_cli.train as train_module
from evorl_cli import checkpoint
from evorl_cli.cli import resumed_config
from evorl_cli.config import build_train_config
from evorl_cli.errors import EnvFault, EvorlError
from evorl_cli.faults import nonfinite_members, repair_nonfinite
from evorl_cli.train import train

TESTS = Path(__file__).parent
TINY = TINY_RUN  # one rollout of 128 env steps a generation
STEPS_PER_GENERATION = 128


def quiet() -> Console:
    return Console(quiet=True)


def temp_files(run: Path) -> list[str]:
    return [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def fail_on_latest_write(monkeypatch, where: str, failure: BaseException, write: int) -> None:
    """Make the `write`-th write of checkpoints/latest fail at `where`: writing the tensors (after
    part of the temp file is on disk), the fsync or the rename (after all of it is)."""
    state = {"file": "", "n": 0}
    real_save_file = checkpoint.save_file

    def maybe_fail(step: str) -> None:
        if step == where and "latest" in state["file"]:
            state["n"] += 1
            if state["n"] == write:
                raise failure

    def save_file(tensors, filename, metadata=None):
        state["file"] = str(filename)
        if where == "save_file":
            Path(filename).write_bytes(b"\0" * 100)  # what a full disk leaves: part of the file
        maybe_fail("save_file")
        return real_save_file(tensors, filename, metadata=metadata)

    class OsAsCheckpointSeesIt:  # the os module, for checkpoint.py only
        def __getattr__(self, name):
            return getattr(os, name)

        def fsync(self, fd):
            maybe_fail("fsync")
            return os.fsync(fd)

        def replace(self, src, dst):
            maybe_fail("replace")
            return os.replace(src, dst)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    monkeypatch.setattr(checkpoint, "os", OsAsCheckpointSeesIt())


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
WRITE_FAILURES = {
    "save_file ENOSPC": ("save_file", ENOSPC, "No space left on device (os error 28)"),
    "safetensors ENOSPC": ("save_file", SafetensorError("Error while serializing: I/O error: No space left on device "
                                                        "(os error 28)"), "No space left on device (os error 28)"),
    "fsync EIO": ("fsync", OSError(errno.EIO, os.strerror(errno.EIO)), "Input/output error (os error 5)"),
    "rename EACCES": ("replace", OSError(errno.EACCES, os.strerror(errno.EACCES)), "Permission denied (os error 13)"),
}


@pytest.mark.parametrize("case", WRITE_FAILURES)
def test_a_failed_checkpoint_write_keeps_the_previous_one_and_says_why(tmp_path, monkeypatch, case):
    where, failure, cause = WRITE_FAILURES[case]
    run = tmp_path / "run"
    # Writes of latest: 1 before generation 0, 2 after it, 3 after generation 1 (fails).
    fail_on_latest_write(monkeypatch, where, failure, write=3)
    with pytest.raises(EvorlError) as info:
        train(build_train_config(TINY), run, quiet())
    latest = run / "checkpoints" / "latest.safetensors"
    assert str(info.value) == (f"could not write checkpoint {latest}: {cause}; the previous latest.safetensors is "
                               f"intact: free disk space (or fix permissions), then resume with: "
                               f"evorl train resume={run}")
    monkeypatch.undo()
    assert temp_files(run) == []
    kept = checkpoint.load(run, prefer="latest")
    assert kept.meta["state"]["generation"] == 1 and kept.meta["state"]["env_steps"] == STEPS_PER_GENERATION
    # ... and the run resumes from it once the disk has room again.
    result = train(resumed_config(kept.meta["config"], []), run, quiet(), resume=kept)
    assert result.env_steps == 512 and checkpoint.load(run, prefer="latest").meta["state"]["generation"] == 4


def test_a_first_checkpoint_that_cannot_be_written_says_to_start_again(tmp_path, monkeypatch):
    fail_on_latest_write(monkeypatch, "save_file", ENOSPC, write=1)
    with pytest.raises(EvorlError) as info:
        train(build_train_config(TINY), tmp_path, quiet())
    assert str(info.value).endswith("No space left on device (os error 28); nothing was written: free disk space "
                                    "(or fix permissions), then start the run again")
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_an_interrupt_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, which evorl turns into the same) after the temp file is complete but
    before the rename: the last complete checkpoint stays, no temp file is left, and it resumes to
    the very state an uninterrupted run reaches."""
    cfg = {**TINY, "env": {**TINY["env"], "backend": "numpy"}}  # its envs' state is saved: resume is exact
    straight = train(build_train_config(cfg), tmp_path / "straight", quiet())
    run = tmp_path / "run"
    fail_on_latest_write(monkeypatch, "replace", KeyboardInterrupt(), write=3)
    with pytest.raises(KeyboardInterrupt):
        train(build_train_config(cfg), run, quiet())
    monkeypatch.undo()
    assert temp_files(run) == []
    kept = checkpoint.load(run, prefer="latest")
    assert kept.meta["state"]["generation"] == 1
    result = train(resumed_config(kept.meta["config"], []), run, quiet(), resume=kept)
    assert result.best == straight.best
    a = checkpoint.load(tmp_path / "straight", prefer="latest").tensors
    b = checkpoint.load(run, prefer="latest").tensors
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- env faults ----------------------------------------------------------------------------------

def faulty(mode: str, fail_at: int) -> dict:
    # Evaluation episodes capped at 15 steps: a confirmation env (screen + re-measurement) plays at
    # most 30 steps before the training env breaks, so the training env is the one that fails.
    return {**TINY, "env": {"name": "faulty", "id": "Faulty-v0", "num_envs": 2, "backend": "gymnasium",
                            "target": None, "kwargs": {"mode": mode, "fail_at": fail_at}},
            "evolution": {**TINY["evolution"], "eval_max_steps": 15}}


# Each training sub-env breaks at its 40th step (generation 1: 32 steps a generation), when the
# 4 training sub-envs have played 39 steps each. Envs carry on across generations and episodes
# last 20 steps, so the 40th step also ends an episode: the 3rd reset is that step's autoreset, and
# a NaN observation there is the episode's final one.
ENV_FAULTS = {
    "raise": (40, "env.id=Faulty-v0 raised ValueError in step() after 156 training env steps: "
                  "simulated failure at step 40"),
    "raise_reset": (3, "env.id=Faulty-v0 raised RuntimeError in step() after 156 training env steps: "
                       "simulated failure in reset number 3"),
    "nan_obs": (40, "env.id=Faulty-v0 returned a final observation holding nan from sub-env 0 in step() after 156 "
                    "training env steps: fix the env (or its env.kwargs) so that it stays finite"),
    "nan_reward": (40, "env.id=Faulty-v0 returned a reward holding nan from sub-env 0 in step() after 156 "
                       "training env steps: fix the env (or its env.kwargs) so that it stays finite"),
}


@pytest.mark.parametrize("mode", ENV_FAULTS)
def test_an_env_that_breaks_is_named_with_the_step_and_the_checkpoint_is_kept(tmp_path, mode):
    fail_at, message = ENV_FAULTS[mode]
    with pytest.raises(EnvFault) as info:
        train(build_train_config(faulty(mode, fail_at)), tmp_path, quiet())
    assert str(info.value) == message
    assert temp_files(tmp_path) == []
    kept = checkpoint.load(tmp_path, prefer="latest")  # written at the end of generation 0
    assert kept.meta["state"]["generation"] == 1
    pop = checkpoint.restore_population(kept, kept.config, torch.device("cpu"))
    assert torch.isfinite(pop.params).all()


def test_an_env_that_breaks_through_the_cli(tmp_path):
    """exit 2, one line naming the env, the step and how to resume; latest from before loads."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    args = ["env=cartpole", "env.id=faulty_env:Faulty-v0", "env.kwargs.mode=raise", "env.kwargs.fail_at=40",
            "env.target=1000", "population.size=2", "env.num_envs=2", "algo.rollout_steps=32", "algo.batch_size=32",
            "evolution.evo_steps=64", "evolution.selection_episodes=2", "evolution.confirm_episodes=4",
            "evolution.eval_max_steps=15", "max_steps=512", "progress=false", "device=cpu", f"hydra.run.dir={run}"]
    proc = subprocess.run([sys.executable, "-m", "evorl_cli.cli", "train", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    latest = run / "checkpoints" / "latest.safetensors"
    assert lines == [f"error: env.id=faulty_env:Faulty-v0 raised ValueError in step() after 156 training env "
                     f"steps: simulated failure at step 40; {latest} holds the run up to its last generation: "
                     f"once the env is fixed, evorl train resume={run}"], proc.stderr
    assert checkpoint.load(latest).meta["state"]["generation"] == 1


# --- a member whose training diverges --------------------------------------------------------------

def test_repair_copies_everything_a_member_owns_from_the_best_healthy_member():
    pop = varied_population(DISCRETE)
    pop.obs_norm.mean = torch.randn(pop.size, pop.net.obs_dim)
    pop.adam.exp_avg = torch.randn_like(pop.adam.exp_avg)
    pop.hp["lr"] = np.array([1e-3, 2e-3, 3e-3])
    assert repair_nonfinite(pop, [0.0, 1.0, 2.0]) == [] and not nonfinite_members(pop).any()

    donor_net = NarrowNet.narrow_of(pop, 1)  # member 1's own network, whatever the layout
    donor_mean, donor_widths = pop.obs_norm.mean[1].clone(), pop.arch.widths[1].copy()
    pop.adam.exp_avg_sq[2, 5] = float("inf")  # only its optimiser state diverged
    pop.params.data[0, 3] = float("nan")
    assert nonfinite_members(pop).tolist() == [True, False, True]
    # member 1 is the only healthy one, whatever the fitness says
    assert repair_nonfinite(pop, [9.0, 1.0, float("nan")]) == [(0, 1), (2, 1)]
    for p in (0, 1, 2):
        assert all(torch.equal(a, b) for a, b in zip(NarrowNet.narrow_of(pop, p), donor_net))
        assert torch.equal(pop.adam.exp_avg[p], pop.adam.exp_avg[1])
        assert torch.equal(pop.adam.exp_avg_sq[p], pop.adam.exp_avg_sq[1])
        assert torch.equal(pop.obs_norm.mean[p], donor_mean)
        assert np.array_equal(pop.arch.widths[p], donor_widths)
    assert not nonfinite_members(pop).any()
    assert pop.hp["lr"].tolist() == [2e-3] * 3
    assert all(v.requires_grad and v.is_leaf for v in pop.views.values())

    pop = varied_population(DISCRETE)
    pop.params.data[1, 0] = float("nan")
    assert repair_nonfinite(pop, [1.0, 5.0, 3.0]) == [(1, 2)]  # the best healthy by last fitness
    assert repair_nonfinite(pop, [float("nan")] * 3) == []

    pop.params.data[:, 0] = float("inf")
    with pytest.raises(EvorlError, match="every member's parameters became NaN or inf"):
        repair_nonfinite(pop, [1.0, 2.0, 3.0])


def test_a_member_that_diverges_mid_run_is_replaced_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    real_update, real_repair = train_module.ppo_update, train_module.repair_nonfinite
    calls, seen = {"n": 0}, []

    def poisoning_update(pop, *args):
        stats = real_update(pop, *args)
        calls["n"] += 1
        if calls["n"] == 2:  # generation 1: member 1's update blows up
            with torch.no_grad():
                pop.params[1, :10] = float("nan")
        return stats

    def watched_repair(pop, hint):
        repairs = real_repair(pop, hint)
        if repairs:
            seen.append((repairs, torch.equal(pop.params.detach()[1], pop.params.detach()[0]),
                         torch.equal(pop.adam.exp_avg[1], pop.adam.exp_avg[0])))
        return repairs

    monkeypatch.setattr(train_module, "ppo_update", poisoning_update)
    monkeypatch.setattr(train_module, "repair_nonfinite", watched_repair)
    with caplog.at_level(logging.WARNING, logger="evorl_cli.faults"):
        result = train(build_train_config(TINY), tmp_path, quiet())
    assert result.generations == 4 and result.env_steps == 512
    assert seen == [([(1, 0)], True, True)]
    assert [r.getMessage() for r in caplog.records] == [
        "member 1: parameters or optimiser state became NaN/inf in the PPO update; replaced by a copy of member 0 "
        "(best last selection fitness among the healthy members)"]
    latest = checkpoint.load(tmp_path, prefer="latest")
    assert all(torch.isfinite(t).all() for t in latest.tensors.values() if t.is_floating_point())
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    repaired = [(r["generation"], r["member"]) for r in rows if "diverged (NaN), replaced by a copy of 0" in r["mutation"]]
    assert repaired == [("1", "1")]
    assert all(np.isfinite(float(r["fitness"])) for r in rows)
