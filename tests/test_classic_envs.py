"""The batched classic-control envs against Gymnasium itself.

Oracle: `SyncVectorEnv([gym.make(id)] * n, autoreset_mode=SAME_STEP)`, reset with the same
seed and stepped with the same actions. Observations, rewards, terminated, truncated and the
final observations of finished episodes must be equal at every step (bit for bit; the one
exception is Pendulum's reward with float32 actions, see `PendulumVectorEnv`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from evorl_cli.envs.classic import BATCHED_ENVS, BatchedClassicControlEnv, make_batched_env

Policy = Callable[[np.random.Generator, np.ndarray], np.ndarray]

ENV_IDS = ["CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0"]


def reference_env(env_id: str, n: int, **kwargs) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(n)],
                         autoreset_mode=AutoresetMode.SAME_STEP)


def random_policy(space: gym.Space, dtype=np.float32, scale: float = 1.0) -> Policy:
    """Seeded uniform actions; continuous ones in `scale` times the action range, as `dtype`."""
    if isinstance(space, spaces.Discrete):
        return lambda rng, obs: rng.integers(0, space.n, size=len(obs))
    low, high = space.low * scale, space.high * scale
    return lambda rng, obs: rng.uniform(low, high, size=(len(obs), *space.shape)).astype(dtype)


def compare(env_id: str, n: int, steps: int, seed: int, policy: Policy | None = None,
            reward_atol: float = 0.0, **kwargs) -> dict[str, int]:
    """Run our env and the oracle side by side; return counts of episode ends."""
    ours = make_batched_env(env_id, n, **kwargs)
    ref = reference_env(env_id, n, **kwargs)
    policy = policy or random_policy(ref.single_action_space)
    rng = np.random.default_rng(seed)
    counts = {"terminated": 0, "truncated": 0, "both": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Gymnasium's env checker
        obs, _ = ours.reset(seed=seed)
        ref_obs, _ = ref.reset(seed=seed)
        np.testing.assert_array_equal(obs, ref_obs, err_msg="reset")
        for t in range(steps):
            actions = policy(rng, ref_obs)
            obs, reward, terminated, truncated, info = ours.step(actions)
            ref_obs, ref_reward, ref_terminated, ref_truncated, ref_info = ref.step(actions)
            where = f"{env_id} step {t}"
            assert obs.dtype == np.float32 and obs.shape == ref_obs.shape, where
            assert reward.dtype == np.float64 and reward.shape == (n,), where
            assert terminated.dtype == bool and truncated.dtype == bool, where
            np.testing.assert_array_equal(terminated, ref_terminated, err_msg=where)
            np.testing.assert_array_equal(truncated, ref_truncated, err_msg=where)
            np.testing.assert_array_equal(obs, ref_obs, err_msg=where)
            if reward_atol:
                np.testing.assert_allclose(reward, ref_reward, rtol=0, atol=reward_atol, err_msg=where)
            else:
                np.testing.assert_array_equal(reward, ref_reward, err_msg=where)

            done = info["_final_obs"]
            np.testing.assert_array_equal(done, terminated | truncated, err_msg=where)
            np.testing.assert_array_equal(done, ref_info.get("_final_obs", np.zeros(n, bool)), err_msg=where)
            np.testing.assert_array_equal(info["_final_info"], done, err_msg=where)
            if done.any():
                final = info["final_obs"]
                assert final.dtype == np.float32 and final.shape == obs.shape, where
                np.testing.assert_array_equal(final[done], np.stack(ref_info["final_obs"][done]), err_msg=where)
            counts["terminated"] += int(terminated.sum())
            counts["truncated"] += int(truncated.sum())
            counts["both"] += int((terminated & truncated).sum())
    return counts


# ---------------------------------------------------------------- whole trajectories


def test_cartpole_random_actions():
    counts = compare("CartPole-v1", 8, 600, seed=0)
    assert counts["terminated"] > 100  # random play falls over every ~20 steps


def test_cartpole_truncation_and_sutton_barto_reward():
    keep_up = lambda rng, obs: (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)  # noqa: E731
    counts = compare("CartPole-v1", 4, 320, seed=1, policy=keep_up, max_episode_steps=100)
    assert counts["truncated"] > 0
    compare("CartPole-v1", 4, 300, seed=2, sutton_barto_reward=True)


def test_acrobot_random_actions_full_episodes():
    # Random play mostly runs into the 500-step limit: two full episodes and a bit, bit-exact.
    counts = compare("Acrobot-v1", 8, 1100, seed=0)
    assert counts["truncated"] >= 16


def test_acrobot_terminations():
    def swing(rng, obs):  # torque with the second joint's velocity reaches the goal quickly
        actions = np.where(obs[:, 5] > 0, 2, 0)
        actions[len(obs) // 2:] = rng.integers(0, 3, size=len(obs) - len(obs) // 2)
        return actions

    counts = compare("Acrobot-v1", 8, 600, seed=3, policy=swing)
    assert counts["terminated"] > 10 and counts["truncated"] > 0


def test_pendulum_float32_actions():
    # Gymnasium squares a float32 torque with libm powf: the reward may differ by ~1e-10.
    counts = compare("Pendulum-v1", 8, 450, seed=0, reward_atol=1e-9)
    assert counts["truncated"] == 16


def test_pendulum_float64_and_out_of_range_actions_exact():
    space = gym.make("Pendulum-v1").action_space
    compare("Pendulum-v1", 6, 250, seed=1, policy=random_policy(space, np.float64, scale=1.5))
    compare("Pendulum-v1", 4, 210, seed=2, g=9.81, policy=random_policy(space, np.float64))


def test_mountain_car():
    counts = compare("MountainCar-v0", 8, 450, seed=0)
    assert counts["truncated"] == 16

    def pump(rng, obs):  # push along the velocity, with some random actions
        actions = np.where(obs[:, 1] > 0, 2, 0)
        explore = rng.random(len(obs)) < 0.2
        actions[explore] = rng.integers(0, 3, size=explore.sum())
        return actions

    counts = compare("MountainCar-v0", 8, 450, seed=1, policy=pump)
    assert counts["terminated"] > 10
    compare("MountainCar-v0", 4, 250, seed=2, policy=pump, goal_velocity=0.01)


def pump_continuous(dtype) -> Policy:
    """Push along the velocity with random strength, often beyond [-1, 1] (clipped by the env)."""
    def policy(rng, obs):
        n = len(obs)
        push = np.sign(obs[:, 1:2]) * rng.uniform(0.3, 1.6, (n, 1)) + rng.normal(0, 0.3, (n, 1))
        return push.astype(dtype)
    return policy


def test_mountain_car_continuous_random_actions():
    counts = compare("MountainCarContinuous-v0", 8, 1100, seed=0)
    assert counts["truncated"] >= 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mountain_car_continuous_goal_and_clipping(dtype):
    # Float32 state arithmetic mixed with Python floats: clipped and unclipped forces, speed
    # limits, the left wall and the goal are all exercised, for both action dtypes.
    counts = compare("MountainCarContinuous-v0", 8, 700, seed=1, policy=pump_continuous(dtype))
    assert counts["terminated"] > 50
    # an unreachable goal velocity: the car hits the right edge and the speed limit instead
    compare("MountainCarContinuous-v0", 4, 400, seed=2, policy=pump_continuous(dtype), goal_velocity=0.5)


def test_terminated_and_truncated_on_the_same_step():
    # Find when sub-env 0's first episode terminates, then set the time limit to that length:
    # like TimeLimit, both flags are then True on that step (and the episode resets once).
    actions = np.random.default_rng(5).integers(0, 2, size=(200, 3))
    ref = reference_env("CartPole-v1", 3)
    ref.reset(seed=7)
    length = next(t + 1 for t in range(200) if ref.step(actions[t])[2][0])
    counts = compare("CartPole-v1", 3, 60, seed=7, max_episode_steps=length,
                     policy=lambda rng, obs, it=iter(actions): next(it))
    assert counts["both"] >= 1


# ---------------------------------------------------------------- API details


def test_registry_and_factory():
    assert sorted(BATCHED_ENVS) == sorted(ENV_IDS)
    assert make_batched_env("LunarLander-v3", 4) is None
    for env_id in ENV_IDS:
        env = make_batched_env(env_id, 3)
        assert isinstance(env, BatchedClassicControlEnv) and isinstance(env, gym.vector.VectorEnv)
        assert env.num_envs == 3
        assert env.max_episode_steps == gym.spec(env_id).max_episode_steps
        assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        assert make_batched_env(env_id, 2, max_episode_steps=7).max_episode_steps == 7
    with pytest.raises(TypeError, match="unexpected keyword"):
        make_batched_env("CartPole-v1", 2, gravity=3.0)
    with pytest.raises(ValueError, match="render"):
        BATCHED_ENVS["CartPole-v1"](2, render_mode="rgb_array")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_match_gymnasium(env_id):
    ours, ref = make_batched_env(env_id, 4), reference_env(env_id, 4)
    single = gym.make(env_id)
    assert ours.single_observation_space == single.observation_space
    assert ours.single_action_space == single.action_space
    assert ours.observation_space == ref.observation_space
    assert ours.action_space == ref.action_space


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seed_list_and_unseeded_resets(env_id):
    seeds = [11, 3, 11, 40]
    ours, ref = make_batched_env(env_id, 4), reference_env(env_id, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs, _ = ours.reset(seed=seeds)
        np.testing.assert_array_equal(obs, ref.reset(seed=seeds)[0])
        np.testing.assert_array_equal(obs[0], obs[2])  # same seed, same start
        assert ours.np_random_seed == tuple(seeds)
        # reset(seed=None) keeps each sub-env's generator going, as Gymnasium's envs do
        for _ in range(2):
            np.testing.assert_array_equal(ours.reset()[0], ref.reset()[0])
        # a None entry keeps that sub-env's generator
        partial = [None, 5, None, 6]
        np.testing.assert_array_equal(ours.reset(seed=partial)[0], ref.reset(seed=partial)[0])
    fresh = make_batched_env(env_id, 4)
    first, _ = fresh.reset()  # entropy-seeded
    assert all(isinstance(s, int) for s in fresh.np_random_seed)
    assert not np.array_equal(first, make_batched_env(env_id, 4).reset()[0])
    with pytest.raises(ValueError, match="seeds"):
        fresh.reset(seed=[1, 2])


def test_step_checks():
    env = make_batched_env("Acrobot-v1", 3)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3, dtype=np.int64))
    env.reset(seed=0)
    for bad in (np.array([0, 1, 3]), np.array([0, -1, 2]), np.zeros(4, np.int64), np.zeros(3)):
        with pytest.raises((ValueError, TypeError)):
            env.step(bad)
    env.step([0, 1, 2])  # lists and other int dtypes are fine
    env.step(np.array([2, 1, 0], dtype=np.uint8))
    pendulum = make_batched_env("Pendulum-v1", 2)
    pendulum.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        pendulum.step(np.zeros(2))
    with pytest.raises(ValueError, match="options"):
        pendulum.reset(options={"low": -0.2})


def test_final_obs_always_present_and_cheap_when_nothing_ends():
    env = make_batched_env("MountainCar-v0", 3)
    env.reset(seed=0)
    obs, _, _, _, info = env.step(np.ones(3, dtype=np.int64))
    assert not info["_final_obs"].any() and info["final_obs"].shape == obs.shape
    assert info["final_info"] == {}


def test_usable_as_gymnasium_vector_entry_point():
    # gym.make_vec(vectorization_mode="vector_entry_point") passes num_envs and max_episode_steps.
    env_id = "evorl-test/BatchedPendulum-v1"
    gym.register(env_id, vector_entry_point=BATCHED_ENVS["Pendulum-v1"], max_episode_steps=50)
    try:
        env = gym.make_vec(env_id, num_envs=3, g=9.0)
        assert isinstance(env, BATCHED_ENVS["Pendulum-v1"]) and env.max_episode_steps == 50 and env.g == 9.0
        env.reset(seed=0)
        for _ in range(50):
            *_, truncated, _ = env.step(np.zeros((3, 1), dtype=np.float32))
        assert truncated.all()
    finally:
        del gym.registry[env_id]


# ---------------------------------------------------------------- the trainer's EnvBatch on top


def _env_batch(backend: str, kwargs=None, wrappers=None, n: int = 4):
    from evorl_cli.config import EnvConfig
    from evorl_cli.envs.batch import EnvBatch

    return EnvBatch(EnvConfig(id="Pendulum-v1", backend=backend, kwargs=kwargs or {}, wrappers=wrappers or []), n)


@pytest.mark.parametrize("backend", ["numpy", "auto"])
def test_env_batch_gives_env_kwargs_to_the_batched_env(backend):
    # Oracle: Gymnasium's Pendulum-v1 made with the same g. g=10 (the default) would move apart at once.
    env = _env_batch(backend, {"g": 2.0})
    assert env.backend_name == "PendulumVectorEnv"
    ref, default = reference_env("Pendulum-v1", 4, g=2.0), reference_env("Pendulum-v1", 4)
    obs, ref_obs, default_obs = env.reset(seed=3), ref.reset(seed=3)[0], default.reset(seed=3)[0]
    np.testing.assert_array_equal(obs, ref_obs)
    rng = np.random.default_rng(0)
    differs = False
    for _ in range(50):
        actions = rng.uniform(-2, 2, size=(4, 1))
        step = env.step(actions)
        ref_obs, ref_reward, *_ = ref.step(actions)
        default_obs = default.step(actions)[0]
        np.testing.assert_array_equal(step.obs, ref_obs)
        np.testing.assert_array_equal(step.reward, ref_reward.astype(np.float32))  # EnvBatch hands out float32
        differs |= not np.array_equal(step.obs, default_obs)
    assert differs, "g=2 must change the dynamics"


def test_env_batch_backend_numpy_applies_every_setting_or_refuses():
    from evorl_cli.errors import EvorlError

    wrapper = {"_target_": "gymnasium.wrappers.ClipReward", "min_reward": -1.0, "max_reward": 1.0}
    with pytest.raises(EvorlError, match=r"^env.backend=numpy cannot apply env.wrappers; use env.backend=auto or gymnasium$"):
        _env_batch("numpy", wrappers=[wrapper])
    with pytest.raises(EvorlError, match=r"no option env.kwargs.gravity \(it takes g\); use env.backend=auto"):
        _env_batch("numpy", {"gravity": 2.0})
    with pytest.raises(EvorlError, match="env.kwargs"):
        _env_batch("numpy", {"g": "strong"})
    # backend=auto falls back to Gymnasium's env for what the batched one cannot apply; the wrapper is there
    clipped = _env_batch("auto", wrappers=[wrapper])
    assert clipped.backend_name == "SyncVectorEnv"
    clipped.reset(seed=0)
    assert (clipped.step(np.zeros((4, 1))).reward >= -1.0).all()
    assert _env_batch("auto", {"render_mode": None}).backend_name == "SyncVectorEnv"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_saved_state_continues_exactly(env_id):
    """`save_state` mid-episode (through JSON, as a checkpoint holds it), `load_state` into a new
    env: both then produce the same steps, resets included (the generators travel too)."""
    import json

    env = make_batched_env(env_id, 3, max_episode_steps=30)
    env.reset(seed=5)
    policy, rng = random_policy(env.single_action_space), np.random.default_rng(0)
    obs = None
    for _ in range(17):
        obs = env.step(policy(rng, np.zeros(3)))[0]
    meta, arrays = env.save_state()
    copy = make_batched_env(env_id, 3, max_episode_steps=30)
    copy.load_state(json.loads(json.dumps(meta)), {k: v.copy() for k, v in arrays.items()})
    for _ in range(60):  # past two time limits: every sub-env resets from its restored generator
        actions = policy(rng, obs)
        a, b = env.step(actions), copy.step(actions)
        for x, y in zip(a[:4], b[:4]):
            np.testing.assert_array_equal(x, y)
        obs = a[0]
