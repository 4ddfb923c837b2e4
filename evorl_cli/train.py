"""The training loop: PPO generations of the whole population, evaluation, selection, mutation.

Read `train` top to bottom: each step is one call into the module that owns it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evorl_cli import checkpoint as ckpt
from evorl_cli.config import TrainConfig
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.errors import EvorlError
from evorl_cli.evaluate import evaluate
from evorl_cli.evolve.mutate import Mutator
from evorl_cli.evolve.tournament import tournament_select
from evorl_cli.population import Population
from evorl_cli.ppo import ppo_update
from evorl_cli.report import GenerationRecord, MetricsWriter, generation_table
from evorl_cli.rollout import RolloutCollector, members_first

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """Counters and lineage of a run: everything besides the population a resume needs."""

    generation: int = 0
    env_steps: int = 0  # training env steps, summed over members
    eval_steps: int = 0
    wall_time: float = 0.0
    best_fitness: float = -math.inf
    best_generation: int = -1
    reached_target: bool = False
    parents: list[int] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)
    history: list[list[float]] = field(default_factory=list)  # fitness per generation, along each lineage

    @classmethod
    def initial(cls, size: int) -> "RunState":
        return cls(parents=[-1] * size, mutations=["init"] * size, history=[[] for _ in range(size)])


@dataclass
class TrainResult:
    run_dir: Path
    generations: int
    env_steps: int
    wall_time: float
    best_fitness: float
    reached_target: bool
    target: float | None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EvorlError(f"device={name}: CUDA is not available on this machine; use device=cpu or device=auto")
    return torch.device(name)


def resolve_target(config: TrainConfig) -> float | None:
    """The score that ends a run early: env.target, else the env's registered reward threshold."""
    if config.env.target is not None:
        return config.env.target
    try:
        return gym.spec(config.env.id).reward_threshold
    except Exception:
        return None


def derived_seed(seed: int, *stream: int) -> int:
    """A seed for one (purpose, generation) stream that never collides with the others."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0] % (2**31 - 1))


class Generators:
    """All randomness of a run. `rng`: evolution; `torch`: action sampling and minibatch order;
    `init`: weight initialisation and parameter noise (CPU, so a run is the same on any device)."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.rng = np.random.default_rng(seed)
        self.torch = torch.Generator(device=device)
        self.torch.manual_seed(seed)
        self.init = torch.Generator()
        self.init.manual_seed(derived_seed(seed, 7))

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        return ({"numpy": self.rng.bit_generator.state},
                {"rng.torch": self.torch.get_state(), "rng.init": self.init.get_state()})

    def load_state(self, meta: dict, tensors: dict[str, torch.Tensor], seed: int, generation: int) -> bool:
        """Restore the saved streams; False if the sampling stream had to be reseeded because the run
        resumes on another kind of device (CPU and CUDA generator states do not convert)."""
        self.rng.bit_generator.state = meta["numpy"]
        self.init.set_state(tensors["rng.init"])
        try:
            self.torch.set_state(tensors["rng.torch"])
            return True
        except RuntimeError:
            self.torch.manual_seed(derived_seed(seed, 3, generation))
            return False


def _save_run(path: Path, pop: Population, state: RunState, config: TrainConfig, gens: Generators) -> None:
    tensors, meta = ckpt.population_payload(pop)
    rng_meta, rng_tensors = gens.state()
    for p, member in enumerate(meta["members"]):
        member["fitness_history"] = state.history[p]
    ckpt.save(path, {**tensors, **rng_tensors},
              {**meta, "kind": "population", "config": OmegaConf.to_container(OmegaConf.structured(config)),
               "state": asdict(state), "rng": rng_meta})


def _save_best(path: Path, pop: Population, member: int, fitness: float, state: RunState,
               config: TrainConfig) -> None:
    tensors, meta = ckpt.population_payload(pop, [member])
    meta["members"][0]["fitness_history"] = state.history[member] + [fitness]
    ckpt.save(path, tensors, {**meta, "kind": "best", "fitness": fitness, "generation": state.generation,
                              "env_steps": state.env_steps,
                              "config": OmegaConf.to_container(OmegaConf.structured(config))})


def _progress(enabled: bool, console: Console) -> Progress:
    return Progress(TextColumn("[bold]gen {task.fields[gen]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("env steps · {task.fields[rate]} steps/s · best {task.fields[best]}"),
                    TimeElapsedColumn(), console=console, disable=not enabled)


def train(config: TrainConfig, run_dir: Path, console: Console | None = None,
          resume: ckpt.Checkpoint | None = None) -> TrainResult:
    """Train the population until the best member reaches the target or `max_steps` is spent."""
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device)
    size, num_envs, evo = config.population.size, config.env.num_envs, config.evolution
    target = resolve_target(config)
    env = EnvBatch(config.env, size * num_envs)
    eval_env = EnvBatch(config.env, size * evo.eval_episodes)
    gens = Generators(config.seed, device)

    if resume is None:
        pop = Population.create(config, env.obs_dim, env.action, device, gens.init, env.image)
        state = RunState.initial(size)
    else:
        pop = ckpt.restore_population(resume, config, device)
        state = RunState(**resume.meta["state"])
        if not gens.load_state(resume.meta["rng"], resume.tensors, config.seed, state.generation):
            console.print("[yellow]resumed on another device: action sampling restarts from a fresh seeded "
                          "stream, so this run will not match an uninterrupted one step for step[/]")

    collector = RolloutCollector(env, size, num_envs, config.algo.rollout_steps, device)
    mutator = Mutator(config.mutation, config.net, config.hp_config, num_envs * config.algo.rollout_steps,
                      gens.rng, gens.init)
    steps_per_rollout = size * num_envs * config.algo.rollout_steps
    rollouts_per_generation = math.ceil(evo.evo_steps / (num_envs * config.algo.rollout_steps))
    checkpoints = run_dir / "checkpoints"
    metrics = MetricsWriter(run_dir / "metrics.csv", state.generation)
    tuned = sorted(config.hp_config)
    if resume is None:  # so that even an interrupt during the first generation can be resumed
        _save_run(checkpoints / f"latest{ckpt.SUFFIX}", pop, state, config, gens)

    with _progress(config.progress, console) as progress:
        task = progress.add_task("train", total=config.max_steps, completed=state.env_steps,
                                 gen=state.generation, rate="-", best=f"{state.best_fitness:.1f}")
        while state.env_steps < config.max_steps and not state.reached_target:
            started = time.perf_counter()

            # 1. PPO on fresh episodes: every member learns from its own envs, all in one batch.
            collector.reset(derived_seed(config.seed, 1, state.generation))
            collector.episodes.clear()
            remaining = math.ceil((config.max_steps - state.env_steps) / steps_per_rollout)
            for _ in range(min(rollouts_per_generation, remaining)):  # the budget may cut the last one short
                rollout = collector.collect(pop, gens.torch)
                if pop.reward_scale.enabled:
                    pop.reward_scale.update(members_first(rollout.returns_seen))
                ppo_update(pop, rollout, config.algo, gens.torch)
                if pop.obs_norm.enabled:
                    pop.obs_norm.update(members_first(rollout.raw_obs))
                state.env_steps += steps_per_rollout
                elapsed = state.wall_time + time.perf_counter() - started
                progress.update(task, completed=min(state.env_steps, config.max_steps),
                                rate=f"{state.env_steps / max(elapsed, 1e-9):,.0f}")

            # 2. Fitness: mean return over evaluation episodes.
            result = evaluate(pop, eval_env, evo.eval_episodes, derived_seed(config.seed, 2, state.generation),
                              gens.torch, evo.eval_deterministic, evo.eval_max_steps)
            fitness = result.fitness
            state.eval_steps += result.env_steps
            best = int(np.argmax(fitness))

            # 3. Report: table, metrics.csv, best-member checkpoint.
            record = GenerationRecord(state.generation, state.env_steps,
                                      state.wall_time + time.perf_counter() - started, fitness,
                                      collector.episodes.mean_returns(), state.parents, state.mutations)
            metrics.write(record, pop)
            progress.console.print(generation_table(record, pop, tuned))
            log.info("generation %d: %d env steps, %.1f s, fitness %s, best member %d (%s)", state.generation,
                     state.env_steps, record.wall_time, np.round(fitness, 2).tolist(), best, pop.arch.describe(best))
            if fitness[best] > state.best_fitness:
                state.best_fitness, state.best_generation = float(fitness[best]), state.generation
                _save_best(checkpoints / f"best{ckpt.SUFFIX}", pop, best, float(fitness[best]), state, config)
            state.reached_target = bool(target is not None and fitness[best] >= target)
            state.history = [h + [float(f)] for h, f in zip(state.history, fitness)]

            # 4. Evolve: tournament with elitism picks parents, then each non-elite child mutates.
            parents = tournament_select(fitness, evo.tournament_size, evo.elitism, gens.rng)
            pop.gather(parents)
            state.history = [list(state.history[i]) for i in parents]
            state.mutations = mutator.mutate(pop, protected={0} if evo.elitism else set())
            state.parents = parents.tolist()
            state.generation += 1

            # 5. Checkpoint the population as the next generation starts from it.
            state.wall_time += time.perf_counter() - started
            _save_run(checkpoints / f"latest{ckpt.SUFFIX}", pop, state, config, gens)
            if config.checkpoint.keep and state.generation % config.checkpoint.keep == 0:
                _save_run(checkpoints / f"gen_{state.generation:04d}{ckpt.SUFFIX}", pop, state, config, gens)
            progress.update(task, gen=state.generation, best=f"{state.best_fitness:.1f}")

    outcome = (f"reached target {target:g}" if state.reached_target else "step budget spent")
    log.info("%s: best fitness %.2f at generation %d, %d env steps, %.1f s", outcome, state.best_fitness,
             state.best_generation, state.env_steps, state.wall_time)
    console.print(f"[bold]{outcome}[/]: best fitness {state.best_fitness:.2f} at generation "
                  f"{state.best_generation} · {state.env_steps:,} env steps · {state.wall_time:.1f} s · "
                  f"run directory {run_dir}")
    env.close()
    eval_env.close()
    return TrainResult(run_dir, state.generation, state.env_steps, state.wall_time, state.best_fitness,
                       state.reached_target, target)
