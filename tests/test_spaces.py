"""Observation and action spaces: the unsupported ones get one line naming what is supported and
the fix (and the fix works); Discrete spaces that do not start at 0 are supported (MultiDiscrete
and MultiBinary actions: test_multi_discrete.py)."""

from __future__ import annotations

import numpy as np
import pytest
import space_envs  # noqa: F401  registers the envs below
from rich.console import Console

import evorl_cli
from evorl_cli.cli import preflight
from evorl_cli.config import EnvConfig, build_train_config
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.errors import EvorlError
from evorl_cli.train import train

FLATTEN = {"_target_": "gymnasium.wrappers.FlattenObservation"}
# Observation spaces FlattenObservation turns into a vector, with that vector's size (by hand).
OBSERVATIONS = {"DictObs-v0": 3 + 3, "TupleObs-v0": 3 + 3, "MultiBinaryObs-v0": 4, "MultiDiscreteObs-v0": 3 + 2,
                "TextObs-v0": 8, "Box4dObs-v0": 16}
# Action spaces, with the supported space an ActionWrapper should expose instead.
ACTIONS = {"MultiDiscrete2dAct-v0": "takes a 1-D MultiDiscrete of 4 entries reshaped to (2, 2)",
           "MultiBinary2dAct-v0": "takes a 1-D MultiBinary of 6 entries reshaped to (2, 3)",
           "DictAct-v0": "takes one Discrete or 1-D Box action", "TupleAct-v0": "takes one Discrete or 1-D Box action",
           "TextAct-v0": "takes one Discrete or 1-D Box action",
           "Box2dAct-v0": "takes a 1-D Box of 6 reshaped to (2, 3)"}


def _env(env_id: str, **kwargs) -> EnvConfig:
    return EnvConfig(id=env_id, backend="gymnasium", **kwargs)


def _refusal(env_id: str) -> str:
    """The one-line error EnvBatch gives for `env_id` with no wrappers."""
    with pytest.raises(EvorlError) as info:
        EnvBatch(_env(env_id), 2)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("env_id", OBSERVATIONS)
def test_an_unsupported_observation_space_names_the_fix_and_the_fix_works(env_id):
    message = _refusal(env_id)
    assert message.startswith(f"env.id={env_id} observes ") and "which is not supported" in message
    assert "evorl reads Box observations (vectors, or images of 2-3 dims) and Discrete ones" in message
    assert message.endswith(f"flatten them to a vector of {OBSERVATIONS[env_id]} with "
                            "env.wrappers=[{_target_: gymnasium.wrappers.FlattenObservation}]")

    env = EnvBatch(_env(env_id, wrappers=[FLATTEN]), 2)  # the fix, as the message spells it
    try:
        assert env.obs_dim == OBSERVATIONS[env_id] and env.image is None
        obs = env.reset(seed=0)
        assert obs.shape == (2, OBSERVATIONS[env_id]) and obs.dtype == np.float32
        assert env.step(np.zeros(2, dtype=np.int64)).obs.shape == obs.shape
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ACTIONS)
def test_an_unsupported_action_space_names_what_a_wrapper_should_expose(env_id):
    message = _refusal(env_id)
    assert message.startswith(f"env.id={env_id} acts in ") and "which is not supported" in message
    assert "evorl's PPO acts in Discrete, 1-D MultiDiscrete, 1-D MultiBinary or 1-D Box action spaces" in message
    assert f"wrap the env in a gymnasium.ActionWrapper of your own that {ACTIONS[env_id]}" in message


def test_preflight_refuses_an_unsupported_space_before_anything_is_made(tmp_path):
    with pytest.raises(EvorlError, match=r"^env.id=space_envs:MultiDiscrete2dAct-v0 acts in MultiDiscrete\(\[\[3 3\] \[2 2\]\]\)"):
        preflight("train", ["env.id=space_envs:MultiDiscrete2dAct-v0", "env.backend=gymnasium",
                            f"hydra.run.dir={tmp_path}/run"])
    assert list(tmp_path.iterdir()) == []


def test_discrete_spaces_that_do_not_start_at_zero(tmp_path):
    """Observations Discrete(5, start=10), actions Discrete(3, start=-1): the env asserts each action
    lies in its space, so a run that trains proves the actions were shifted."""
    env = EnvBatch(_env("ShiftedDiscrete-v0"), 3)
    try:
        assert env.obs_dim == 5
        assert env.env_actions(np.array([0, 1, 2])).tolist() == [-1, 0, 1]
        obs = env.reset(seed=0)
        assert (obs.sum(1) == 1).all()  # one-hot of the observation minus its start
        env.step(np.array([0, 1, 2]))
    finally:
        env.close()
    config = build_train_config({
        "env": {"name": "shifted", "id": "ShiftedDiscrete-v0", "num_envs": 2, "backend": "gymnasium", "target": None},
        "population": {"size": 2}, "algo": {"rollout_steps": 16, "batch_size": 16}, "hp_config": {},
        "evolution": {"evo_steps": 16, "selection_episodes": 2, "confirm_episodes": 2}, "max_steps": 64,
        "progress": False, "device": "cpu"})
    train(config, tmp_path, Console(quiet=True))
    agent = evorl_cli.load(tmp_path)
    actions = {int(agent.act(np.array(v), deterministic=False)[0]) for v in [10, 11, 12, 13, 14] * 8}
    assert actions <= {-1, 0, 1} and len(actions) > 1
