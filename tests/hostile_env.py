"""An env module whose import leaves a marker file (path in $EVORL_TEST_MARKER): `env.id=hostile_env:Hostile-v0`
makes gymnasium.make import it. It registers Hostile-v0 as CartPole, so a trusted run really works."""

import os
from pathlib import Path

import gymnasium as gym

if os.environ.get("EVORL_TEST_MARKER"):
    Path(os.environ["EVORL_TEST_MARKER"]).touch()

if "Hostile-v0" not in gym.registry:
    gym.register(id="Hostile-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                 max_episode_steps=500)
