"""env.backend=envpool: the EnvPool adapter keeps EnvBatch's same-step autoreset contract.

These tests need the optional `envpool` package and skip without it, except the one that checks the
error a user gets when it is missing. They check the contract, not equality with Gymnasium: EnvPool's
environments are separate C++ implementations with their own random number generators, so the same
seed gives different episodes than `env.backend=gymnasium` (but the same ones from run to run).
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
from rich.console import Console

from evorl_cli.config import EnvConfig, build_train_config
from evorl_cli.envs.batch import EnvBatch, check_env_id
from evorl_cli.errors import EvorlError

INSTALL_LINE = "env.backend=envpool needs the envpool package: pip install 'evorl-cli[envpool]'"
TASKS = ["CartPole-v1", "Pendulum-v1"]
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting:UserWarning")  # EnvPool's own spaces


def envpool_or_skip():
    return pytest.importorskip("envpool")


def fresh_episode(env_id: str, obs: np.ndarray) -> bool:
    """Whether `obs` can be a first observation: CartPole starts in [-0.05, 0.05]^4, Pendulum with
    |angular velocity| <= 1."""
    if env_id == "CartPole-v1":
        return bool(np.all(np.abs(obs) <= 0.05))
    return bool(abs(obs[2]) <= 1.0)


def test_missing_envpool_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "envpool", None)  # `import envpool` now raises ImportError
    for make in (lambda: EnvBatch(EnvConfig(id="CartPole-v1", backend="envpool"), 2),
                 lambda: check_env_id("CartPole-v1", "envpool")):
        with pytest.raises(EvorlError) as err:
            make()
        message = str(err.value)
        assert message.startswith(INSTALL_LINE)
        assert "Linux x86_64" in message and "\n" not in message


@pytest.mark.parametrize("env_id", TASKS)
def test_spaces_match_gymnasium(env_id):
    envpool_or_skip()
    batch = EnvBatch(EnvConfig(id=env_id, backend="envpool"), 3)
    reference = gym.make(env_id)
    try:
        assert batch.backend_name == "EnvPoolVectorEnv"
        assert batch.env.single_observation_space == reference.observation_space
        assert batch.env.single_action_space == reference.action_space
        assert batch.reset(0).shape == (3, reference.observation_space.shape[0])
    finally:
        batch.close()
        reference.close()


@pytest.mark.parametrize("env_id", TASKS)
def test_same_step_autoreset_against_envpools_own_next_step_reset(env_id):
    """Each sub-env replayed in its own 1-env pool with EnvPool's native NEXT_STEP autoreset: the
    adapter's step that ends an episode must return that pool's terminal obs as final_obs and, as
    obs, the observation the pool's next (reset) step gives."""
    envpool = envpool_or_skip()
    from evorl_cli.envs.envpool_env import EnvPoolVectorEnv

    n, seed, steps = 3, 11, 450
    env = EnvPoolVectorEnv(env_id, n)
    refs = [envpool.make(env_id, env_type="gymnasium", num_envs=1, seed=seed + i) for i in range(n)]
    limit = gym.spec(env_id).max_episode_steps
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=seed)
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(obs[i], ref.reset()[0][0])
    assert np.all(info["elapsed_step"] == 0)
    length = np.zeros(n, dtype=int)
    finished = 0
    for _ in range(steps):
        if env_id == "CartPole-v1":
            action = rng.integers(0, 2, n)
        else:
            action = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        length += 1
        done = terminated | truncated
        for i, ref in enumerate(refs):
            r_obs, r_reward, r_term, r_trunc, _ = ref.step(action[i: i + 1])
            assert (terminated[i], truncated[i]) == (r_term[0], r_trunc[0])
            assert reward[i] == pytest.approx(r_reward[0])
            if not done[i]:
                np.testing.assert_array_equal(obs[i], r_obs[0])
                continue
            finished += 1
            assert info["_final_obs"][i]
            np.testing.assert_array_equal(info["final_obs"][i], r_obs[0])  # the terminal observation
            reset_obs, reset_reward, *_ = ref.step(action[i: i + 1])  # EnvPool's NEXT_STEP reset
            assert reset_reward[0] == 0
            np.testing.assert_array_equal(obs[i], reset_obs[0])  # already the next episode's first obs
            assert fresh_episode(env_id, obs[i])
            assert info["final_elapsed_step"][i] == length[i]
            if env_id == "CartPole-v1" and terminated[i]:  # the pole fell or the cart left the track
                x, theta = info["final_obs"][i][0], info["final_obs"][i][2]
                assert abs(x) > 2.4 or abs(theta) > 12 * 2 * np.pi / 360
            if truncated[i]:
                assert length[i] == limit
        if done.any():
            assert not info["_final_obs"][~done].any()
        length[done] = 0
        assert np.array_equal(info["elapsed_step"], length)  # EnvPool's counter restarts with the episode
        assert np.all(length < limit)
    assert finished >= n  # CartPole falls within a few dozen steps; Pendulum truncates at 200
    env.close()
    for ref in refs:
        ref.close()


@pytest.mark.parametrize("env_id", TASKS)
def test_envbatch_passes_final_obs_through(env_id):
    envpool_or_skip()
    batch = EnvBatch(EnvConfig(id=env_id, backend="envpool", max_episode_steps=40), 4)
    rng = np.random.default_rng(1)
    batch.reset(5)
    ended = 0
    for _ in range(120):
        action = (rng.integers(0, 2, 4) if batch.action.discrete
                  else rng.uniform(-2, 2, (4, 1)).astype(np.float32))
        tr = batch.step(action)
        done = tr.terminated | tr.truncated
        assert (tr.final_obs is not None) == bool(done.any())
        for i in np.flatnonzero(done):
            ended += 1
            assert fresh_episode(env_id, tr.obs[i])
            assert not np.array_equal(tr.final_obs[i], tr.obs[i])
    assert ended >= 4  # max_episode_steps=40 truncates at least every 40 steps
    batch.close()


def test_seeded_reset_reseeds_each_sub_env():
    envpool = envpool_or_skip()
    from evorl_cli.envs.envpool_env import EnvPoolVectorEnv

    env = EnvPoolVectorEnv("CartPole-v1", 3)
    first, _ = env.reset(seed=7)
    env.step(np.zeros(3, dtype=np.int64))
    again, _ = env.reset(seed=7)  # EnvPool itself ignores reset(seed=...); the adapter remakes the pool
    np.testing.assert_array_equal(first, again)
    as_list, _ = env.reset(seed=[7, 8, 9])
    np.testing.assert_array_equal(first, as_list)
    unseeded, _ = env.reset()  # continues each sub-env's stream, as Gymnasium does
    assert not np.array_equal(unseeded, first)
    mixed, _ = env.reset(seed=[9, 7, 1234])
    single = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=1, seed=1234)
    np.testing.assert_array_equal(mixed[0], first[2])
    np.testing.assert_array_equal(mixed[1], first[0])
    np.testing.assert_array_equal(mixed[2], single.reset()[0][0])
    env.reset(seed=2**31 - 2)  # seed + i past int32 wraps instead of failing
    assert env.seeds == [2**31 - 2, 2**31 - 1, 0]
    env.close()
    single.close()


def test_ids_kwargs_and_wrappers():
    envpool = envpool_or_skip()
    from evorl_cli.envs.envpool_env import envpool_task_id

    assert envpool_task_id("CartPole-v1") == "CartPole-v1"
    if "Pong-v5" in envpool.list_all_envs():
        assert envpool_task_id("ALE/Pong-v5") == "Pong-v5"
    with pytest.raises(EvorlError, match=r"EnvPool has no such task; did you mean CartPole-v1.*list_all_envs"):
        check_env_id("CartPole-v9", "envpool")
    with pytest.raises(EvorlError, match=r"env.kwargs=\{'bogus': 1\}: EnvPool's CartPole-v1 rejects them"):
        EnvBatch(EnvConfig(id="CartPole-v1", backend="envpool", kwargs={"bogus": 1}), 2)
    with pytest.raises(EvorlError, match=r"env.kwargs.num_envs: set by evorl"):
        EnvBatch(EnvConfig(id="CartPole-v1", backend="envpool", kwargs={"num_envs": 4}), 2)
    wrappers = [{"_target_": "gymnasium.wrappers.ClipReward", "min_reward": 0.0}]
    with pytest.raises(EvorlError, match="Gymnasium wrappers cannot wrap an EnvPool pool"):
        EnvBatch(EnvConfig(id="CartPole-v1", backend="envpool", wrappers=wrappers), 2)


def test_render_mode_disables_autoreset():
    envpool_or_skip()
    batch = EnvBatch(EnvConfig(id="CartPole-v1", backend="envpool"), 1, render_mode="rgb_array")
    obs = batch.reset(0)
    frame = np.asarray(batch.render())
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    for _ in range(500):
        tr = batch.step(np.ones(1, dtype=np.int64))  # always push right: falls within ~10 steps
        obs = tr.obs
        if tr.terminated[0]:
            break
    assert tr.terminated[0] and tr.final_obs is None
    assert not fresh_episode("CartPole-v1", obs[0])  # the terminal obs: no reset until the caller's
    batch.close()


def test_train_two_generations(tmp_path):
    envpool_or_skip()
    from evorl_cli.train import train

    config = build_train_config({
        "env": {"name": "cartpole", "id": "CartPole-v1", "num_envs": 2, "backend": "envpool"},
        "population": {"size": 2},
        "algo": {"rollout_steps": 32, "batch_size": 32},
        "evolution": {"evo_steps": 64, "selection_episodes": 2, "confirm_episodes": 4, "eval_max_steps": 50},
        "max_steps": 256,
        "progress": False,
    })
    result = train(config, tmp_path, Console(quiet=True))
    assert result.generations == 2
    assert result.env_steps >= 256
    assert np.isfinite(result.best_score)
