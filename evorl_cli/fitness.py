"""Fitness: the cheap selection fitness that ranks members, and the confirmed score evorl reports.

Two different numbers, never one. Selection may be noisy (tournaments tolerate noise), but the
maximum of many noisy means is biased upwards (the winner's curse), so the score a run reports,
stops on, saves as `best` and returns to sweepers is always a measurement of one member on fresh
episodes, seeded apart from every episode selection used, with its standard error, and never the
measurement that chose it: a re-measurement after its screen passed, or (the run's first
confirmation, which passes whatever it reads) the screen itself.

Episode seeds of each purpose come from their own block of seeds, so training, selection and
confirmation episodes can never share a starting state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Callable, Sequence

import numpy as np
import torch

from evorl_cli.config import EnvConfig, EvolutionConfig
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.nets.distributions import choose, draw_noise
from evorl_cli.population import Population

SELECTION_KINDS = ("eval", "train")  # evolution.selection
SEED_BLOCK = 2**28  # seeds per purpose; each purpose's episodes start at purpose * SEED_BLOCK


class Purpose(IntEnum):
    """What an episode is played for; each has its own block of env seeds."""

    TRAINING = 0
    SELECTION = 1
    CONFIRMATION = 2  # the screen of a candidate
    REMEASURE = 3  # the second, reported measurement of a candidate that passed its screen (not the first)


def episode_cap(*caps: int | None) -> int | None:
    """The tightest of the step caps given (None where none is set)."""
    given = [cap for cap in caps if cap is not None]
    return min(given) if given else None


def derived_seed(seed: int, *stream: int) -> int:
    """A seed for one (purpose, generation, ...) stream that never collides with the others."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0] % (2**31 - 1))


def episode_seeds(purpose: Purpose, run_seed: int, generation: int, count: int) -> list[int]:
    """`count` consecutive env seeds for one generation's episodes of `purpose`, inside its block."""
    offset = derived_seed(run_seed, 10 + int(purpose), generation) % (SEED_BLOCK - count)
    start = int(purpose) * SEED_BLOCK + offset
    return list(range(start, start + count))


@dataclass
class EvalResult:
    returns: np.ndarray  # [P, E] return of each episode
    lengths: np.ndarray  # [P, E]

    @property
    def fitness(self) -> np.ndarray:
        return self.returns.mean(axis=1)

    @property
    def std_error(self) -> np.ndarray:
        """Standard error of each member's mean return (0 with a single episode)."""
        episodes = self.returns.shape[1]
        if episodes < 2:
            return np.zeros(self.returns.shape[0])
        return self.returns.std(axis=1, ddof=1) / math.sqrt(episodes)

    @property
    def env_steps(self) -> int:
        return int(self.lengths.sum())


@torch.no_grad()
def evaluate(pop: Population, env: EnvBatch, episodes: int, seed: int | Sequence[int] | Sequence[Sequence[int]],
             gen: torch.Generator | Sequence[torch.Generator], deterministic: bool = True,
             max_steps: int | None = None,
             settled: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> EvalResult:
    """Run one episode in each of the P x E sub-envs of `env` and return every return.

    Each member meets the same E starting states (episode j is seeded `seed + j`, or `seed[j]` for
    a list), so fitness differences come from the policies, not from luck of the draw; or, given
    one list of E seeds per member, each member its own. `gen`: one generator for every sampled
    action, or one per member, so that what a member plays does not depend on the others (a
    paired measurement replays alone). `settled(returns [P, E], finished [P, E])`: asked after
    each step; True stops the episodes still running (their returns stay partial).
    """
    size = pop.size
    if isinstance(seed, int):
        per_env = [seed + j for j in range(episodes)] * size
    elif len(seed) and not isinstance(seed[0], (int, np.integer)):
        per_env = [int(s) for member_seeds in seed for s in member_seeds]
    else:
        per_env = list(seed) * size
    assert len(per_env) == size * episodes and env.num_envs == size * episodes
    gens = None if isinstance(gen, torch.Generator) else list(gen)
    assert gens is None or len(gens) == size
    obs = env.reset(per_env)
    finished = np.zeros(size * episodes, dtype=bool)
    returns = np.zeros(size * episodes)
    lengths = np.zeros(size * episodes, dtype=np.int64)
    steps = 0
    state = pop.initial_state(episodes)  # carried through each episode (each env plays one)
    log_std = pop.log_std()
    std = None if log_std is None else log_std.exp().unsqueeze(1)
    while not finished.all() and (max_steps is None or steps < max_steps):
        member_obs = torch.as_tensor(obs, device=pop.device).view(size, episodes, -1)
        head, _, state = pop.forward_normalized(pop.obs_norm(member_obs), state)
        # Only the action: evaluation needs no log-probabilities.
        noise = None
        if not deterministic:
            discrete = log_std is None
            noise = (draw_noise(head.shape, discrete, gen, head.device) if gens is None else
                     torch.cat([draw_noise((1, *head.shape[1:]), discrete, g, head.device) for g in gens]))
        action = choose(head, noise, std, nvec=pop.net.action.nvec)
        tr = env.step(action.cpu().numpy().reshape(size * episodes, *action.shape[2:]))
        running = ~finished
        returns += tr.reward * running
        lengths += running
        finished |= tr.terminated | tr.truncated
        obs = tr.obs
        steps += 1
        if settled is not None and settled(returns.reshape(size, episodes), finished.reshape(size, episodes)):
            break
    return EvalResult(returns.reshape(size, episodes), lengths.reshape(size, episodes))


@dataclass
class Measurement:
    """One member's mean return on fresh episodes. Everything needed to play the same episodes
    again is recorded (seeds `first_seed` .. `first_seed + episodes - 1` and the action-sampling
    seed), so the figure can be re-checked from a checkpoint."""

    score: float  # mean return
    std_error: float
    episodes: int
    first_seed: int
    action_seed: int
    deterministic: bool
    env_steps: int

    def describe(self) -> str:
        return f"{self.score:.2f} ± {self.std_error:.2f}"


@dataclass
class Confirmation:
    """How a candidate was confirmed, in two independent measurements on fresh episodes.

    `screen` decides whether the candidate may replace the best; a candidate that passes is
    measured again (`measure`), and that second figure, never used to choose, is the reported
    score. Reporting the screen itself would bring the winner's curse back: over a run, the best
    of many screens is biased upwards by about one or two standard errors. The exception is a
    run's first confirmation, which passes whatever its screen reads: its `measure` is its screen."""

    generation: int
    member: int  # slot during that generation
    selection_fitness: float  # what selection saw, for comparison
    screen: Measurement
    measure: Measurement | None  # None: the screen did not beat the best
    discarded_steps: int = 0  # steps of a second measurement played beside a screen that then failed

    @property
    def passed(self) -> bool:
        return self.measure is not None

    @property
    def score(self) -> float:
        """The reported, confirmed score (NaN if the candidate did not pass its screen)."""
        return self.measure.score if self.measure is not None else math.nan

    @property
    def std_error(self) -> float:
        return self.measure.std_error if self.measure is not None else math.nan

    @property
    def episodes(self) -> int:
        return self.measure.episodes if self.measure is not None else 0

    @property
    def remeasured(self) -> bool:
        """Whether the reported figure is a second measurement (False: failed its screen, or the
        run's first confirmation, whose screen stands as its measurement; see `confirm`). Such a
        measurement has its own seeds, so it never equals the screen."""
        return self.measure is not None and self.measure != self.screen

    @property
    def env_steps(self) -> int:
        """Env steps played: the screen, the second measurement if there was one, and what a
        paired second measurement had played when its screen failed (`confirm`)."""
        return self.screen.env_steps + (self.measure.env_steps if self.remeasured else 0) + self.discarded_steps

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Confirmation":
        measure = data.get("measure")
        return cls(data["generation"], data["member"], data["selection_fitness"], Measurement(**data["screen"]),
                   None if measure is None else Measurement(**measure), data.get("discarded_steps", 0))

    def describe(self) -> str:
        return self.measure.describe() if self.measure is not None else f"screen {self.screen.describe()}"


def _plan(purpose: Purpose, run_seed: int, generation: int, episodes: int) -> tuple[int, int]:
    """(first episode seed, action-sampling seed) of a generation's measurement of `purpose`."""
    first_seed = episode_seeds(purpose, run_seed, generation, episodes)[0]
    return first_seed, derived_seed(run_seed, 20 + int(purpose), generation)


def measure(single: Population, env: EnvBatch, purpose: Purpose, run_seed: int, generation: int,
            deterministic: bool, max_steps: int | None) -> Measurement:
    """Mean return of a population of one on `env.num_envs` fresh episodes of `purpose`."""
    episodes = env.num_envs
    first_seed, action_seed = _plan(purpose, run_seed, generation, episodes)
    result = replay_confirmation(single, env, first_seed, episodes, action_seed, deterministic, max_steps)
    return _measurement(result, 0, first_seed, action_seed, deterministic)


def _measurement(result: EvalResult, row: int, first_seed: int, action_seed: int, deterministic: bool) -> Measurement:
    return Measurement(float(result.fitness[row]), float(result.std_error[row]), result.returns.shape[1], first_seed,
                       action_seed, deterministic, int(result.lengths[row].sum()))


def measure_pair(pop: Population, member: int, env: EnvBatch, run_seed: int, generation: int, best_score: float,
                 deterministic: bool, max_steps: int | None) -> tuple[Measurement, Measurement | None, int]:
    """The screen and the second measurement of `member` played side by side, on `env`'s 2E
    sub-envs: (screen, second measurement or None, steps discarded). Each half has its own
    episode and action seeds and runs as a member of its own (a population of the member twice),
    so each figure is exactly what `measure` would give alone; once the screen's episodes are all
    in and it has not beaten `best_score`, the second half stops and its steps are discarded.

    Where a step of all sub-envs costs little more than a step of half of them (our NumPy envs:
    Acrobot 97 against 68 microseconds for 200 and 100), this takes the time of one measurement
    instead of two whenever the screen passes."""
    episodes = env.num_envs // 2
    plans = [_plan(purpose, run_seed, generation, episodes) for purpose in (Purpose.CONFIRMATION, Purpose.REMEASURE)]
    gens = [torch.Generator(device=pop.device).manual_seed(action_seed) for _, action_seed in plans]

    def screen_failed(returns: np.ndarray, finished: np.ndarray) -> bool:
        return bool(finished[0].all()) and not returns.mean(axis=1)[0] > best_score

    result = evaluate(pop.subset([member, member]), env, episodes,
                      [range(first, first + episodes) for first, _ in plans], gens, deterministic, max_steps,
                      screen_failed)
    screen, again = (_measurement(result, row, first, action_seed, deterministic)
                     for row, (first, action_seed) in enumerate(plans))
    if screen.score > best_score:
        return screen, again, 0
    return screen, None, again.env_steps


def confirm(pop: Population, member: int, env: EnvBatch, run_seed: int, generation: int, best_score: float,
            deterministic: bool, max_steps: int | None, selection_fitness: float = math.nan,
            pair_env: EnvBatch | None = None) -> Confirmation:
    """Screen `member` on fresh episodes; if it beats `best_score`, measure it again on other fresh
    episodes (seeded apart from selection and from each other) for the score to report. With no
    best yet (`best_score` -inf) the screen is the score to report. `pair_env` (twice `env`'s
    sub-envs): play the screen and the second measurement side by side (`measure_pair`)."""
    if best_score == -math.inf:
        # The run's first confirmation has no best to beat: its screen passes whatever it reads,
        # so it was not chosen for being high and is already a plain measurement (selection chose
        # the candidate on other episodes). Measuring again would only double the cost, which is
        # highest exactly then: early members often play every episode to the time limit.
        screen = measure(pop.subset([member]), env, Purpose.CONFIRMATION, run_seed, generation, deterministic,
                         max_steps)
        return Confirmation(generation, member, float(selection_fitness), screen, screen)
    if pair_env is not None:
        screen, again, discarded = measure_pair(pop, member, pair_env, run_seed, generation, best_score,
                                                deterministic, max_steps)
        return Confirmation(generation, member, float(selection_fitness), screen, again, discarded)
    single = pop.subset([member])
    screen = measure(single, env, Purpose.CONFIRMATION, run_seed, generation, deterministic, max_steps)
    again = None
    if screen.score > best_score:
        again = measure(single, env, Purpose.REMEASURE, run_seed, generation, deterministic, max_steps)
    return Confirmation(generation, member, float(selection_fitness), screen, again)


def replay_confirmation(single: Population, env: EnvBatch, first_seed: int, episodes: int, action_seed: int,
                        deterministic: bool, max_steps: int | None) -> EvalResult:
    """Play a confirmation's episodes with a population of one member (also how a recorded
    confirmation is re-checked from a checkpoint)."""
    gen = torch.Generator(device=single.device)
    gen.manual_seed(action_seed)
    return evaluate(single, env, episodes, first_seed, gen, deterministic, max_steps)


def should_confirm(fitness: np.ndarray, candidate: int, best_score: float, target: float | None,
                   last_generation: bool = False) -> bool:
    """Confirm the generation's top-ranked member (`candidate`) when it may beat the confirmed best:
    its selection fitness is higher, or unknown (no finished episode to judge it by). Not when
    selection told no member apart (every one the same finite fitness, as when all play Acrobot to
    its -500 time limit) short of the target: the top rank is then arbitrary, and confirming it
    would measure a member nothing chose (on Acrobot 100 episodes to the time limit, a fifth of a
    run's evaluation time). A tie at the target is confirmed (it may end the run), and so is one in
    the run's `last_generation`, so that members tied at a ceiling under an unreachable target (all
    at CartPole's 500-step limit, say) still leave a confirmed best. A population of one is never
    tied: its member is confirmed whenever it may beat the best."""
    value = float(fitness[candidate])
    if math.isnan(value):
        return True
    # One member is not a tie: its fitness says how good it is against the best so far.
    tied = len(fitness) > 1 and bool(np.all(fitness == value))
    if tied and not last_generation and (target is None or value < target):
        return False
    return value > best_score


class Judge:
    """Owns the evaluation envs of a run and turns members into selection fitness and confirmations."""

    def __init__(self, evo: EvolutionConfig, env_cfg: EnvConfig, size: int, run_seed: int) -> None:
        self.evo, self.run_seed = evo, run_seed
        self.selection_env = EnvBatch(env_cfg, size * evo.selection_episodes) if evo.selection == "eval" else None
        self.confirm_env = EnvBatch(env_cfg, evo.confirm_episodes)
        # Where sub-envs step together for little more than the cost of one (`EnvBatch.vectorised`),
        # a screen and its second measurement play side by side (`measure_pair`).
        self.pair_env = EnvBatch(env_cfg, 2 * evo.confirm_episodes) if self.confirm_env.vectorised else None

    def selection_fitness(self, pop: Population, train_returns: np.ndarray, generation: int,
                          gen: torch.Generator) -> tuple[np.ndarray, int]:
        """Each member's selection fitness and the env steps it cost: `train` takes the mean return
        of the training episodes each member just finished (free, NaN where none finished); `eval`
        plays `selection_episodes` episodes per member, the same starts for every member, cut at
        `selection_max_steps` when set (a cheaper estimate: whatever a member has not done by then
        counts as never done)."""
        if self.selection_env is None:
            return train_returns, 0
        episodes = self.evo.selection_episodes
        seeds = episode_seeds(Purpose.SELECTION, self.run_seed, generation, episodes)
        result = evaluate(pop, self.selection_env, episodes, seeds, gen, self.evo.deterministic,
                          episode_cap(self.evo.selection_max_steps, self.evo.eval_max_steps))
        return result.fitness, result.env_steps

    def confirm(self, pop: Population, member: int, generation: int, selection_fitness: float,
                best_score: float) -> Confirmation:
        return confirm(pop, member, self.confirm_env, self.run_seed, generation, best_score, self.evo.deterministic,
                       self.evo.eval_max_steps, selection_fitness, self.pair_env)

    def close(self) -> None:
        for env in (self.selection_env, self.confirm_env, self.pair_env):
            if env is not None:
                env.close()
