"""Learning runs with the shipped defaults (slow): the population really solves the tasks."""

from __future__ import annotations


import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from rich.console import Console

from evorl_cli.cli import CONF_DIR
from evorl_cli.config import build_train_config
from evorl_cli.train import train

pytestmark = pytest.mark.slow


def _config(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return build_train_config(compose("train", overrides=["progress=false", *overrides]))


@pytest.mark.parametrize("env, budget", [("acrobot", 600_000), ("cartpole", 600_000)])
def test_defaults_reach_the_target(env, budget, tmp_path):
    result = train(_config(f"env={env}", f"max_steps={budget}"), tmp_path, Console(quiet=True))
    assert result.reached_target, f"{env}: best fitness {result.best_score} after {result.env_steps} steps"


def test_pendulum_continuous_actions_learn(tmp_path):
    result = train(_config("env=pendulum", "max_steps=1500000"), tmp_path, Console(quiet=True))
    assert result.reached_target, f"best fitness {result.best_score} after {result.env_steps} steps"


def test_pendulum_novel_lstm_reaches_a_confirmed_target_that_holds(tmp_path):
    """The tutorial's task: Pendulum with its velocity hidden, learnt by recurrent PPO. A random
    policy scores about -1,200. With the preset's defaults (4M steps, linear lr decay) seeds 0-2
    confirmed -200 after 1.7-3.9M training steps; a fresh evaluation of the best checkpoint then
    agrees with the confirmed score within noise. Seed 1 (1.7M steps, the shortest of the three)
    keeps CI's share of this test under a minute."""
    import torch

    from evorl_cli.agent import load_member
    from evorl_cli.envs.batch import EnvBatch
    from evorl_cli.fitness import evaluate

    result = train(_config("env=pendulum_novel", "net=lstm", "seed=1"), tmp_path, Console(quiet=True))
    assert result.reached_target and result.best_score >= -200, result.best
    loaded = load_member(tmp_path)
    env = EnvBatch(loaded.config.env, 200)
    fresh = evaluate(loaded.population, env, 200, 12345, torch.Generator().manual_seed(0), True, None)
    env.close()
    gap = abs(float(fresh.fitness[0]) - result.best_score)
    assert gap < 4 * float(np.hypot(fresh.std_error[0], result.best.std_error)), (fresh.fitness, result.best)


def test_memory_task_needs_recurrence(tmp_path):
    """CartPole with both velocities hidden: an LSTM population solves it, an MLP one cannot."""
    lstm = train(_config("env=cartpole_novel", "net=lstm", "max_steps=1000000"), tmp_path / "lstm",
                 Console(quiet=True))
    mlp = train(_config("env=cartpole_novel", "net=mlp", "max_steps=400000", "env.target=1e9"), tmp_path / "mlp",
                Console(quiet=True))
    assert lstm.reached_target and lstm.best_score >= 475, lstm
    assert mlp.best_score < 300, mlp


# Seed 0 of the preset stops at a confirmed 249.85 after 1.97M training env steps, about 4 minutes on
# 2 cores; the 4M-step budget bounds it at about 15. It fits CI's budget, so CI runs it with the slow tests.
def test_lunarlander_reaches_a_confirmed_200(tmp_path):
    """The lunarlander preset (rl-zoo3's PPO settings per member) at rl-zoo3's per-agent budget of
    1M steps per member: rl-zoo3's single PPO agent scores 242 ± 32 there, so the population's
    confirmed best (50 fresh episodes) should pass 200 (the preset's target, which ends the run)."""
    pytest.importorskip("Box2D")
    result = train(_config("env=lunarlander", "max_steps=4000000"), tmp_path, Console(quiet=True))
    assert result.reached_target and result.best_score >= 200, result.best
