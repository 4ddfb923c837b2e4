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
    """Returns are pure noise: N(0, 1) paid at the last of `NOISE_LENGTH` steps. Each action's
    payout is drawn from the episode's seed at reset and never shown, so whatever the agent does
    its return is N(0, 1): no policy is better than another, and a run that "reaches" a target
    above 0 has been fooled by luck. (Members acting differently are paid differently, so
    selection does not see every member tied, as it would with one payout per episode.)"""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)
    reset_seeds: list[int | None] = []  # every seed passed to reset, in order (a test's record)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        NoiseReturnEnv.reset_seeds.append(seed)
        self._t = 0
        self._payouts = self.np_random.normal(size=2)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self._t += 1
        done = self._t >= NOISE_LENGTH
        reward = float(self._payouts[int(action)]) if done else 0.0
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


@pytest.mark.parametrize("backend", ["gymnasium", "numpy"])  # numpy: screen and measurement played side by side
@pytest.mark.parametrize("deterministic", [True, False])
def test_best_checkpoint_records_a_confirmation_that_replays_exactly(tmp_path, deterministic, backend):
    # 8 generations: long enough for a later candidate to beat the first confirmation, so the best
    # holds two distinct measurements (screen and re-measurement), and both must replay.
    config = tiny_config(**{"evolution.deterministic": deterministic, "evolution.confirm_episodes": 6,
                            "max_steps": 1024, "env.backend": backend})
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

    fitness = np.array([-120.0, -90.0, -96.0, -95.0])
    assert should_confirm(fitness, 1, -math.inf, -100.0) and should_confirm(fitness, 1, -95.0, -100.0)
    assert not should_confirm(fitness, 2, -95.0, -100.0) and not should_confirm(fitness, 3, -95.0, -100.0)
    assert should_confirm(np.array([math.nan, -99.0]), 0, -95.0, -100.0)  # nothing to judge it by: measure it
    assert should_confirm(np.array([math.nan, math.nan]), 0, -math.inf, None)


def test_a_population_selection_cannot_tell_apart_is_confirmed_only_at_the_target():
    from evorl_cli.fitness import should_confirm

    tied = np.full(4, -500.0)  # every member played every selection episode to Acrobot's time limit
    assert not should_confirm(tied, 0, -math.inf, -100.0)  # the top rank is arbitrary: nothing to confirm
    assert not should_confirm(tied, 0, -math.inf, None)
    assert should_confirm(np.full(4, 500.0), 0, -math.inf, 475.0)  # tied at the target: it may end the run
    assert should_confirm(np.full(4, 200.0), 0, -math.inf, 475.0, last_generation=True)  # the run leaves a best
    assert not should_confirm(np.full(4, 200.0), 0, 200.0, 475.0, last_generation=True)  # not better than it
    assert should_confirm(np.array([-500.0, -499.0]), 1, -math.inf, -100.0)  # one step apart is apart


def test_a_run_whose_members_tie_below_the_target_confirms_nothing(tmp_path):
    # Selection episodes cut at one step: every CartPole member scores exactly 1.0, so selection tells
    # none apart; below the target nothing is confirmed until the last generation, which leaves a
    # best; at a target of 1.0 the tie is confirmed at once.
    run = tmp_path / "run"
    result = train(tiny_config(**{"evolution.selection_max_steps": 1, "env.target": 475.0, "max_steps": 512}),
                   run, quiet())
    records = rows(run)
    assert {float(r["fitness"]) for r in records} == {1.0} and result.generations == 4
    assert all(int(r["confirm_steps"]) == 0 for r in records if int(r["generation"]) < 3)
    assert result.best is not None and result.best.generation == 3
    result = train(tiny_config(**{"evolution.selection_max_steps": 1, "env.target": 1.0, "max_steps": 256}),
                   tmp_path / "run2", quiet())
    assert result.best is not None and result.best.generation == 0


def test_selection_max_steps_cuts_selection_episodes_and_not_confirmations(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(**{"env.id": "Pendulum-v1", "env.name": "pendulum", "evolution.selection_max_steps": 3,
                         "evolution.eval_max_steps": None, "max_steps": 256}), run, quiet())
    records = rows(run)
    # Pendulum's episodes last 200 steps, so every selection episode is cut at 3: 2 members x 2
    # episodes x 3 steps a generation. The confirmation's episodes run to their end.
    generations = sorted({int(r["generation"]) for r in records})
    assert generations == [0, 1]
    for g in generations:
        assert {int(r["eval_steps"]) for r in records if int(r["generation"]) == g} == {(g + 1) * 2 * 2 * 3}
    confirmations = ckpt.load(run, prefer="latest").meta["state"]["confirmations"]
    assert confirmations and all(c["screen"]["env_steps"] == 4 * 200 for c in confirmations)


@pytest.mark.parametrize("recurrent", [None, "lstm"], ids=["mlp", "lstm"])
@pytest.mark.parametrize("deterministic", [True, False])
def test_a_paired_screen_and_measurement_equal_the_two_played_in_turn(deterministic, recurrent):
    # Our NumPy envs play a screen and its second measurement side by side (`measure_pair`); each must
    # be exactly what it is alone, and a screen that fails stops the second one, its steps counted.
    from evorl_cli.fitness import confirm, measure
    from evorl_cli.population import Population

    config = tiny_config(**{"env.backend": "numpy", "evolution.confirm_episodes": 12, "evolution.eval_max_steps": None,
                            "net.recurrent": recurrent, "algo.max_seq_len": 16})
    env, pair_env = EnvBatch(config.env, 12), EnvBatch(config.env, 24)
    assert env.vectorised and pair_env.vectorised
    init = torch.Generator().manual_seed(3)
    pop = Population.create(config, env.obs_dim, env.action, torch.device("cpu"), init, env.image)
    for best in (-math.inf, 5.0, 1e9):  # first confirmation, a screen that passes, one that fails
        alone = confirm(pop, 1, env, 7, 2, best, deterministic, None)
        paired = confirm(pop, 1, env, 7, 2, best, deterministic, None, pair_env=pair_env)
        assert paired.screen == alone.screen and paired.measure == alone.measure
        assert alone.discarded_steps == 0
        if best == 1e9:  # stopped when the screen's last episode ended: part of what it plays alone
            whole = measure(pop.subset([1]), env, Purpose.REMEASURE, 7, 2, deterministic, None)
            assert not paired.passed and 0 < paired.discarded_steps <= whole.env_steps
            assert paired.env_steps == paired.screen.env_steps + paired.discarded_steps
        else:
            assert paired.passed and paired.discarded_steps == 0 and paired.env_steps == alone.env_steps
    env.close()
    pair_env.close()


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


def test_the_tightest_step_cap_applies():
    from evorl_cli.fitness import episode_cap

    assert episode_cap(None, None) is None
    assert episode_cap(200, None) == 200 and episode_cap(None, 50) == 50 and episode_cap(200, 50) == 50


def test_a_population_of_one_is_confirmed_whenever_it_may_beat_the_best():
    """One member is no tie: a population of one (plain PPO, the baseline a user compares with)
    used to be confirmed only in its last generation, losing a better policy it had on the way."""
    from evorl_cli.fitness import should_confirm

    assert should_confirm(np.array([3600.0]), 0, -math.inf, 3800.0)
    assert should_confirm(np.array([3600.0]), 0, 3000.0, 3800.0)
    assert not should_confirm(np.array([2400.0]), 0, 3000.0, 3800.0)


def test_a_run_with_one_member_confirms_it_from_the_first_generation(tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(**{"population.size": 1, "evolution.tournament_size": 1, "max_steps": 256,
                                  "env.target": 475.0}), run, quiet())
    assert result.generations == 4
    assert rows(run)[0]["confirmed_score"] != ""  # generation 0, not only the last one
