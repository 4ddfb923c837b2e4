"""Selection fitness versus the confirmed score: what a run reports is what a user gets."""

from __future__ import annotations

import csv
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import tiny_config
from rich.console import Console

from evorl_cli import checkpoint as ckpt
from evorl_cli.agent import load_member
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.fitness import SEED_BLOCK, Purpose, episode_seeds, replay_confirmation
from evorl_cli.train import train

NOISE_ID = "evorl-test/NoiseReturn-v0"
NOISE_LENGTH = 4  # steps per episode, whatever the actions
NOISE_MEAN = 0.0  # every policy's expected return


class NoiseReturnEnv(gym.Env):
    """Returns are pure noise: N(0, 1) paid at the last of `NOISE_LENGTH` steps, drawn from the
    episode's seed, whatever the agent does. No policy is better than another, so a run that
    "reaches" a target above 0 has been fooled by luck."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)
    reset_seeds: list[int | None] = []  # every seed passed to reset, in order (a test's record)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        NoiseReturnEnv.reset_seeds.append(seed)
        self._t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self._t += 1
        done = self._t >= NOISE_LENGTH
        reward = float(self.np_random.normal()) if done else 0.0
        return np.full(2, self._t / NOISE_LENGTH, np.float32), reward, done, False, {}


if NOISE_ID not in gym.registry:
    gym.register(id=NOISE_ID, entry_point=NoiseReturnEnv)


def noise_config(**overrides):
    return tiny_config(**{"env.id": NOISE_ID, "env.name": "noise", "env.target": 0.5, "population.size": 4,
                          "evolution.selection_episodes": 3, "evolution.confirm_episodes": 100,
                          "evolution.eval_max_steps": None, "max_steps": 4 * 64 * 12, **overrides})


def quiet() -> Console:
    return Console(quiet=True)


def rows(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_noise_only_env_never_reaches_a_target_above_its_mean(tmp_path):
    result = train(noise_config(), tmp_path / "run", quiet())
    records = rows(tmp_path / "run")
    selection = np.array([float(r["fitness"]) for r in records])
    # Selection alone would have been fooled: some member's 3-episode mean passes the target...
    assert selection.max() >= 0.5
    # ...but no confirmed score does, and every confirmation lies within a few standard errors of 0.
    assert not result.reached_target and result.generations == 12
    confirmations = ckpt.load(tmp_path / "run", prefer="latest").meta["state"]["confirmations"]
    assert len(confirmations) >= 2
    for c in confirmations:
        for m in (c["screen"], c["measure"]):
            if m is not None:
                assert abs(m["score"] - NOISE_MEAN) < 4 * m["std_error"] and 0.05 < m["std_error"] < 0.15, c
    assert result.best_score < 0.5
    # Every reported figure is a plain measurement: a re-measurement on its own seeds, or the run's
    # first screen, which passed unconditionally.
    assert confirmations[0]["measure"] == confirmations[0]["screen"]
    for c in confirmations[1:]:
        if c["measure"] is not None:
            assert c["measure"]["first_seed"] // SEED_BLOCK == Purpose.REMEASURE
    # The reported best was never used to choose it, so it is not biased upwards: over the run the
    # best screen is the max of many noisy means, the reported score one plain measurement. (In this
    # seeded run a later candidate beat the first confirmation, whose screen would otherwise stand
    # as the best and could itself be that max.)
    assert result.best.remeasured
    assert result.best.score < max(c["screen"]["score"] for c in confirmations)


def test_selection_and_confirmation_episodes_use_disjoint_seeds(tmp_path):
    NoiseReturnEnv.reset_seeds.clear()
    train(noise_config(**{"max_steps": 4 * 64 * 3}), tmp_path / "run", quiet())
    seeds = [s for s in NoiseReturnEnv.reset_seeds if s is not None]
    blocks = {purpose: {s for s in seeds if s // SEED_BLOCK == purpose} for purpose in Purpose}
    assert set().union(*blocks.values()) == set(seeds)
    # 3 generations: training 4 members x 2 envs, seeded once (they carry on across generations),
    # selection 4 x 3 episodes (the same 3 starts for every member), screens of 100 fresh episodes,
    # and 100 more for each screen that passed.
    assert len(blocks[Purpose.TRAINING]) == 8
    assert len(blocks[Purpose.SELECTION]) == 3 * 3
    assert len(blocks[Purpose.CONFIRMATION]) >= 100 and len(blocks[Purpose.CONFIRMATION]) % 100 == 0
    assert len(blocks[Purpose.REMEASURE]) >= 100 and len(blocks[Purpose.REMEASURE]) % 100 == 0
    for generation in range(50):  # and the seed blocks never meet, whatever the generation
        sets = [set(episode_seeds(purpose, 0, generation, 1000)) for purpose in Purpose]
        for a in range(len(sets)):
            for b in range(a + 1, len(sets)):
                assert not sets[a] & sets[b] and max(sets[a]) < min(sets[b])


@pytest.mark.parametrize("deterministic", [True, False])
def test_best_checkpoint_records_a_confirmation_that_replays_exactly(tmp_path, deterministic):
    # 8 generations: long enough for a later candidate to beat the first confirmation, so the best
    # holds two distinct measurements (screen and re-measurement), and both must replay.
    config = tiny_config(**{"evolution.deterministic": deterministic, "evolution.confirm_episodes": 6,
                            "max_steps": 1024})
    result = train(config, tmp_path / "run", quiet())
    loaded = load_member(tmp_path / "run")
    assert loaded.confirmed == result.best and loaded.confirmed.passed and loaded.confirmed.remeasured
    for recorded in (loaded.confirmed.screen, loaded.confirmed.measure):  # both measurements replay
        assert recorded.deterministic == deterministic
        env = EnvBatch(loaded.config.env, recorded.episodes)
        replay = replay_confirmation(loaded.population, env, recorded.first_seed, recorded.episodes,
                                     recorded.action_seed, recorded.deterministic, config.evolution.eval_max_steps)
        env.close()
        assert float(replay.fitness[0]) == recorded.score
        assert float(replay.std_error[0]) == pytest.approx(recorded.std_error, rel=1e-12)
        assert replay.env_steps == recorded.env_steps


def test_evaluation_steps_are_counted_and_match_the_episodes_played(tmp_path):
    run = tmp_path / "run"
    result = train(noise_config(**{"max_steps": 4 * 64 * 5}), run, quiet())
    records = rows(run)
    confirmations = ckpt.load(run, prefer="latest").meta["state"]["confirmations"]
    confirmed_by = {c["generation"]: c for c in confirmations}
    confirm_total = 0
    for g in range(5):
        gen_rows = [r for r in records if int(r["generation"]) == g]
        # Every episode lasts NOISE_LENGTH steps: 4 members x 3 selection episodes per generation.
        assert {int(r["eval_steps"]) for r in gen_rows} == {(g + 1) * 4 * 3 * NOISE_LENGTH}
        if g in confirmed_by:
            c = confirmed_by[g]
            # A screen of 100 episodes, and 100 more for a screen that passed, except the run's
            # first confirmation: it passes whatever it reads, so its screen stands as its measure.
            first = c is confirmations[0]
            if first:
                assert c["measure"] == c["screen"]
            confirm_total += (200 if c["measure"] and not first else 100) * NOISE_LENGTH
            screened = [r for r in gen_rows if r["screen_score"]]
            assert len(screened) == 1 and int(screened[0]["member"]) == c["member"]
            assert float(screened[0]["screen_score"]) == pytest.approx(c["screen"]["score"], abs=1e-4)
            if c["measure"]:
                assert float(screened[0]["confirmed_score"]) == pytest.approx(c["measure"]["score"], abs=1e-4)
        assert {int(r["confirm_steps"]) for r in gen_rows} == {confirm_total}
        assert {int(r["env_steps"]) for r in gen_rows} == {(g + 1) * 4 * 64}
    assert result.eval_steps == 5 * 4 * 3 * NOISE_LENGTH + confirm_total


def test_train_selection_uses_training_returns_and_plays_no_selection_episodes(tmp_path):
    run = tmp_path / "run"
    train(noise_config(**{"evolution.selection": "train", "max_steps": 4 * 64 * 2}), run, quiet())
    records = rows(run)
    assert all(int(r["eval_steps"]) == 0 for r in records)
    for r in records:  # the selection fitness is the member's mean training return
        assert float(r["fitness"]) == pytest.approx(float(r["train_return"]), abs=1e-4)
    assert any(r["screen_score"] for r in records)


def test_a_candidate_that_does_not_beat_the_confirmed_best_is_not_confirmed():
    from evorl_cli.fitness import should_confirm

    assert should_confirm(-90.0, -math.inf) and should_confirm(-90.0, -95.0)
    assert not should_confirm(-96.0, -95.0) and not should_confirm(-95.0, -95.0)
    assert should_confirm(math.nan, -95.0)  # nothing to judge it by: measure it


def test_subset_leaves_the_population_untouched_and_acts_like_the_member():
    from helpers import DISCRETE, varied_population

    pop = varied_population(DISCRETE)
    before = pop.params.clone()
    single = pop.subset([1])
    obs = torch.randn(3, 7, 5)
    full = pop.act(obs, torch.Generator().manual_seed(0), deterministic=True)
    one = single.act(obs[1:2], torch.Generator().manual_seed(0), deterministic=True)
    assert torch.equal(pop.params, before) and pop.size == 3 and single.size == 1
    assert torch.equal(one.action[0], full.action[1])
    assert torch.allclose(one.value[0], full.value[1], atol=1e-5)
