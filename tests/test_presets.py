"""The Box2D, MuJoCo and Atari presets compose, validate and train a few PPO updates on a tiny budget.

Each run is the preset with only its budget shrunk (population, envs, rollout, evaluation), so every
other setting (net, normalisation, wrappers, PPO hyperparameters) is the shipped one."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from rich.console import Console

from evorl_cli import checkpoint as ckpt
from evorl_cli.cli import CONF_DIR
from evorl_cli.config import build_train_config
from evorl_cli.train import train

TINY_BUDGET = ["population.size=2", "env.num_envs=2", "algo.rollout_steps=32", "algo.batch_size=64",
               "evolution.evo_steps=64", "max_steps=256", "evolution.selection_episodes=1",
               "evolution.confirm_episodes=2", "evolution.eval_max_steps=40", "progress=false", "device=cpu"]


def preset(name: str, *extra: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return build_train_config(compose(config_name="train", overrides=[f"env={name}", *TINY_BUDGET, *extra]))


def trains_a_few_updates(name: str, tmp_path, *extra: str) -> None:
    config = preset(name, *extra)
    result = train(config, tmp_path, Console(quiet=True))
    # 256 steps = 2 generations of 2 members x 2 envs x 32 steps x 2 rollouts: 4 PPO updates each
    assert result.env_steps == 256 and result.generations == 2
    start = ckpt.load(tmp_path / "checkpoints" / "latest.safetensors")
    assert start.meta["state"]["generation"] == 2
    assert torch.isfinite(start.tensors["params"]).all()


@pytest.mark.parametrize("name, env_id, target, discrete", [
    ("lunarlander", "LunarLander-v3", 200, True),
    ("lunarlander_continuous", "LunarLanderContinuous-v3", 200, False),
])
def test_box2d_presets(tmp_path, name, env_id, target, discrete):
    pytest.importorskip("Box2D")
    config = preset(name)
    assert config.env.id == env_id and config.env.target == target and config.net.name == "mlp"
    trains_a_few_updates(name, tmp_path)


@pytest.mark.parametrize("name, env_id, hidden_sizes, activation, init", [
    ("halfcheetah", "HalfCheetah-v5", [256, 256], "relu", "uniform"),  # rl-zoo3's
    ("hopper", "Hopper-v5", [64, 64], "tanh", "orthogonal"),  # CleanRL's
])
def test_mujoco_presets(tmp_path, name, env_id, hidden_sizes, activation, init):
    pytest.importorskip("mujoco")
    config = preset(name)
    assert config.env.id == env_id and config.algo.normalize_obs and config.algo.normalize_rewards
    assert config.net.hidden_sizes == hidden_sizes and config.net.activation == activation and config.net.init == init
    trains_a_few_updates(name, tmp_path)


def test_a_mujoco_member_renders_headless(tmp_path):
    """`evorl render` of a MuJoCo preset on a machine without a display (render picks EGL there)."""
    pytest.importorskip("mujoco")
    import ctypes.util
    import os

    from evorl_cli.agent import load_member
    from evorl_cli.render import record_episodes

    if os.environ.get("MUJOCO_GL", "egl") == "egl" and ctypes.util.find_library("EGL") is None:
        pytest.skip("no libEGL for headless MuJoCo rendering")
    trains_a_few_updates("hopper", tmp_path)
    frames, returns = record_episodes(load_member(tmp_path), 1, seed=0, max_steps=3)
    assert len(frames) == 4 and frames[0].ndim == 3 and frames[0].shape[2] == 3 and len(returns) == 1


def test_atari_preset_picks_the_cnn_and_a_command_line_net_wins():
    pytest.importorskip("ale_py")
    config = preset("breakout")
    assert config.net.name == "cnn" and config.net.cnn.channels == [32, 64, 64]
    assert preset("breakout", "net=cnn_lstm").net.recurrent == "lstm"


@pytest.mark.slow
def test_atari_preset_trains(tmp_path):
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")  # AtariPreprocessing resizes with OpenCV (the atari extra installs it)
    trains_a_few_updates("breakout", tmp_path)


@pytest.mark.parametrize("name", ["lunarlander", "halfcheetah", pytest.param("breakout", marks=pytest.mark.slow)])
def test_presets_run_on_envpool(tmp_path, name):
    """`env.backend=envpool` just works for the presets EnvPool covers (Atari: its own preprocessing)."""
    pytest.importorskip("envpool")
    if name == "breakout":
        pytest.importorskip("ale_py")
    trains_a_few_updates(name, tmp_path, "env.backend=envpool")


def test_envpool_takes_the_atari_presets_preprocessing_as_its_own_options():
    """The Gymnasium wrappers of the Atari preset become EnvPool's options for the same preprocessing:
    frames as Gymnasium's wrappers give them (4 stacked 84x84 grey), no fire-reset, no sticky actions."""
    pytest.importorskip("envpool")
    from evorl_cli.envs.batch import EnvBatch
    from evorl_cli.envs.envpool_env import atari_preprocessing_kwargs

    config = preset("breakout", "env.backend=envpool")
    options = atari_preprocessing_kwargs(config.env.id, list(config.env.wrappers), dict(config.env.kwargs))
    assert options == {"noop_max": 30, "frame_skip": 4, "img_height": 84, "img_width": 84, "episodic_life": False,
                       "gray_scale": True, "stack_num": 4, "use_fire_reset": False, "repeat_action_probability": 0.0}
    env = EnvBatch(config.env, 2)
    assert env.image == (4, 84, 84) and env.action.n == 4
    env.close()
    # Anything else it cannot express is refused, not dropped.
    assert atari_preprocessing_kwargs(config.env.id, list(config.env.wrappers)[:1], {}) is None
    assert atari_preprocessing_kwargs(config.env.id, list(config.env.wrappers), {"mode": 2}) is None


def test_gymnasiums_halfcheetah_model_deprecation_is_not_printed_and_other_mujoco_warnings_are(capfd):
    """MuJoCo 4 warns that Gymnasium's HalfCheetah XML uses a deprecated attribute, once per env:
    a population run printed it for every member. Other MuJoCo warnings still reach stderr."""
    mujoco = pytest.importorskip("mujoco")
    from evorl_cli.envs.batch import EnvBatch

    env = EnvBatch(preset("halfcheetah").env, 2)
    env.close()
    assert "settotalmass" not in capfd.readouterr().err
    handler = mujoco.get_mju_user_warning()
    assert handler is not None
    handler("Nan, Inf or huge value in QACC at DOF 0. The simulation is unstable.")
    assert capfd.readouterr().err == "WARNING: Nan, Inf or huge value in QACC at DOF 0. The simulation is unstable.\n"


def test_a_rendered_mujoco_frame_follows_the_body_its_camera_config_tracks():
    """Gymnasium renders MuJoCo envs through a free camera that never moves, so a hopping agent
    left the GIF within seconds; `evorl render` tracks the body the env's camera config names."""
    pytest.importorskip("mujoco")
    import ctypes.util
    import os

    import mujoco
    import numpy as np

    from evorl_cli.envs.batch import EnvBatch

    if os.environ.get("MUJOCO_GL", "egl") == "egl" and ctypes.util.find_library("EGL") is None:
        pytest.skip("no libEGL for headless MuJoCo rendering")
    os.environ.setdefault("MUJOCO_GL", "egl")
    env = EnvBatch(preset("hopper").env, 1, render_mode="rgb_array", purpose="render")
    try:
        env.reset(0)
        first = env.render()
        hopper = env.env.envs[0].unwrapped
        hopper.data.qpos[0] = 5.0  # carry the hopper 5 m forward, out of a fixed camera's view
        mujoco.mj_forward(hopper.model, hopper.data)
        moved = env.render()
        camera = hopper.mujoco_renderer.viewer.cam
        assert camera.type == mujoco.mjtCamera.mjCAMERA_TRACKING
        assert camera.lookat[0] == pytest.approx(hopper.data.subtree_com[camera.trackbodyid][0])
        assert camera.lookat[0] > 4.0
        # the hopper is still in the picture, about as large: its orange-brown limbs
        def hopper_pixels(frame):
            return int(((frame[..., 0] > 120) & (frame[..., 2] < 80) & (frame[..., 0] > frame[..., 1] + 30)).sum())
        assert hopper_pixels(first) > 500 and hopper_pixels(moved) > 0.8 * hopper_pixels(first)
    finally:
        env.close()


def test_the_camera_follows_a_robot_that_travels_and_leaves_the_others_as_gymnasium_frames_them():
    pytest.importorskip("mujoco")
    import gymnasium as gym

    from evorl_cli.envs.mujoco_camera import body_to_follow

    def follows(env_id: str, configured: int):
        env = gym.make(env_id)
        try:
            return body_to_follow(env.unwrapped.model, configured)
        finally:
            env.close()

    assert follows("Hopper-v5", 2) == 2  # the torso its camera config names
    assert follows("HalfCheetah-v5", -1) == 1  # names none; its root slides along x without limit
    assert follows("InvertedPendulum-v5", 0) is None  # watches the world
    assert follows("InvertedDoublePendulum-v5", -1) is None  # a cart on a limited rail: stays in view
