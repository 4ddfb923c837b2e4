"""The training loop: PPO generations of the whole population, evaluation, selection, mutation.

Read `train` top to bottom: each step is one call into the module that owns it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

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
from evorl_cli.faults import repair_nonfinite
from evorl_cli.heap import keep_large_blocks_off_the_heap, release_free_memory, set_up_objects_frozen
from evorl_cli.fitness import Confirmation, Judge, Purpose, derived_seed, episode_seeds, should_confirm
from evorl_cli.evolve.mutate import Mutator
from evorl_cli.evolve.tournament import tournament_select
from evorl_cli.population import Population
from evorl_cli.ppo import UpdateStats, ppo_update
from evorl_cli.records import GenerationRecord, LoggerContext, Loggers, plot_on_finish, summary_panel
from evorl_cli.rollout import RolloutCollector, members_first
from evorl_cli.schedule import lr_factor

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """Counters, lineage and confirmed scores of a run: everything besides the population a resume needs."""

    generation: int = 0
    env_steps: int = 0  # training env steps, summed over members: what max_steps budgets
    eval_steps: int = 0  # env steps of selection episodes (evolution.selection=eval)
    confirm_steps: int = 0  # env steps of confirmation episodes
    wall_time: float = 0.0
    eval_time: float = 0.0  # seconds of wall_time spent on selection episodes and confirmations
    best: dict | None = None  # the member held as best (a Confirmation that passed), None before one passes
    best_steps: list[int] = field(default_factory=list)  # [training, evaluation] env steps when it was confirmed
    confirmations: list[dict] = field(default_factory=list)  # every confirmation, in order
    reached_target: bool = False
    parents: list[int] = field(default_factory=list)
    mutations: list[str] = field(default_factory=list)
    history: list[list[float]] = field(default_factory=list)  # selection fitness per generation, along each lineage

    @classmethod
    def initial(cls, size: int) -> "RunState":
        return cls(parents=[-1] * size, mutations=["init"] * size, history=[[] for _ in range(size)])

    @property
    def best_confirmation(self) -> Confirmation | None:
        return None if self.best is None else Confirmation.from_dict(self.best)

    @property
    def best_score(self) -> float:
        return -math.inf if self.best is None else self.best["measure"]["score"]


@dataclass
class TrainResult:
    run_dir: Path
    generations: int
    env_steps: int  # training
    eval_steps: int  # selection and confirmation
    wall_time: float
    best: Confirmation | None  # the confirmed best
    reached_target: bool
    target: float | None

    @property
    def best_score(self) -> float:
        """The confirmed best score (what sweepers optimise); -inf if nothing was confirmed."""
        return -math.inf if self.best is None else self.best.score


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


def _save_run(path: Path, pop: Population, state: RunState, config: dict, gens: Generators,
              collector: RolloutCollector) -> None:
    tensors, meta = ckpt.population_payload(pop)
    rng_meta, rng_tensors = gens.state()
    envs_meta, envs_tensors = collector.save_state()
    for p, member in enumerate(meta["members"]):
        member["fitness_history"] = state.history[p]
    ckpt.save(path, {**tensors, **rng_tensors, **envs_tensors},
              {**meta, "kind": "population", "config": config,
               "state": asdict(state), "rng": rng_meta, "collector": envs_meta})


def _save_best(path: Path, pop: Population, confirmation: Confirmation, state: RunState, config: dict) -> None:
    """The confirmed best member, with its confirmation (score, standard error, episodes, seeds)
    and the selection fitness it had, recorded separately."""
    member = confirmation.member
    tensors, meta = ckpt.population_payload(pop, [member])
    meta["members"][0]["fitness_history"] = state.history[member] + [confirmation.selection_fitness]
    ckpt.save(path, tensors, {**meta, "kind": "best", "confirmed": confirmation.as_dict(),
                              "generation": state.generation, "env_steps": state.env_steps,
                              "eval_steps": state.eval_steps + state.confirm_steps,
                              "config": config})


def _progress(enabled: bool, console: Console) -> Progress:
    return Progress(TextColumn("[bold]gen {task.fields[gen]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("env steps · {task.fields[rate]} steps/s · best {task.fields[best]}"),
                    TimeElapsedColumn(), console=console, disable=not enabled)


def train(config: TrainConfig, run_dir: Path, console: Console | None = None,
          resume: ckpt.Checkpoint | None = None,
          observer: Callable[[Population, GenerationRecord], None] | None = None) -> TrainResult:
    """Train the population until a confirmed score reaches the target or `max_steps` training
    env steps are spent. `observer` (benchmarks, notebooks) sees the population and the record of
    every generation before selection changes it; it must not touch the run's generators."""
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    keep_large_blocks_off_the_heap()  # resident memory stays flat over a long run (heap.py)
    device = resolve_device(config.device)
    size, num_envs, evo = config.population.size, config.env.num_envs, config.evolution
    target = resolve_target(config)
    env = EnvBatch(config.env, size * num_envs, purpose="training")
    judge = Judge(evo, config.env, size, config.seed)
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
    # Training envs are reset once, when the run starts, and carry on across generations.
    if resume is None or not collector.load_state(resume.meta.get("collector"), resume.tensors):
        if resume is not None:
            why = (f"the training envs ({env.backend_name}) cannot save their state" if "collector" in resume.meta
                   else "the checkpoint predates saved training envs")
            console.print(f"[yellow]resumed: {why}, so they start fresh episodes; the run continues, but not "
                          "step for step as an uninterrupted one would[/]")
        collector.reset(episode_seeds(Purpose.TRAINING, config.seed, state.generation, size * num_envs))
    mutator = Mutator.for_run(config, gens.rng, gens.init)
    steps_per_rollout = size * num_envs * config.algo.rollout_steps
    rollouts_per_generation = math.ceil(evo.evo_steps / (num_envs * config.algo.rollout_steps))
    checkpoints = run_dir / "checkpoints"
    recorded = OmegaConf.to_container(OmegaConf.structured(config))  # once: it costs ~40 ms a time
    actions = "deterministic" if evo.deterministic else "sampled"
    if resume is None:  # so that even an interrupt during the first generation can be resumed
        _save_run(checkpoints / f"latest{ckpt.SUFFIX}", pop, state, recorded, gens, collector)

    logging_ctx = LoggerContext(config, run_dir, console, state.generation, state.env_steps)
    with _progress(config.progress, console) as progress, Loggers.for_run(logging_ctx) as loggers, \
            set_up_objects_frozen():
        task = progress.add_task("train", total=config.max_steps, completed=state.env_steps,
                                 gen=state.generation, rate="-", best=_best_text(state))
        while state.env_steps < config.max_steps and not state.reached_target:
            started, steps_before, updates = time.perf_counter(), state.env_steps, []

            # 1. PPO: every member learns from its own envs, all in one batch; the envs carry on
            #    from where the last generation left them.
            collector.episodes.clear()
            remaining = math.ceil((config.max_steps - state.env_steps) / steps_per_rollout)
            for _ in range(min(rollouts_per_generation, remaining)):  # the budget may cut the last one short
                rollout = collector.collect(pop, gens.torch)
                if pop.reward_scale.enabled:
                    pop.reward_scale.update(members_first(rollout.returns_seen))
                lr_scale = lr_factor(config.algo.lr_schedule, state.env_steps, config.max_steps)
                updates.append(ppo_update(pop, rollout, config.algo, gens.torch, lr_scale))
                for member, donor in repair_nonfinite(pop, [h[-1] if h else math.nan for h in state.history]):
                    state.mutations[member] += f"; diverged (NaN), replaced by a copy of {donor}"  # table, csv
                if pop.obs_norm.enabled:
                    pop.obs_norm.update(members_first(rollout.raw_obs))
                state.env_steps += steps_per_rollout
                elapsed = state.wall_time + time.perf_counter() - started
                progress.update(task, completed=min(state.env_steps, config.max_steps),
                                rate=f"{state.env_steps / max(elapsed, 1e-9):,.0f}")

            # 2. Selection fitness ranks the members. The top-ranked one, when it may beat the best,
            #    is screened on fresh episodes; if the screen beats the best, it becomes the best and
            #    is measured again on other fresh episodes: that figure is the one reported (the
            #    run's first confirmation passes unconditionally, so its screen is reported).
            judged = time.perf_counter()
            train_rate = (state.env_steps - steps_before) / max(judged - started, 1e-9)
            train_return = collector.episodes.mean_returns()
            fitness, steps = judge.selection_fitness(pop, train_return, state.generation, gens.torch)
            state.eval_steps += steps
            candidate = int(np.argmax(np.nan_to_num(fitness, nan=-np.inf)))
            confirmation = None
            if should_confirm(fitness, candidate, state.best_score, target, state.env_steps >= config.max_steps):
                confirmation = judge.confirm(pop, candidate, state.generation, float(fitness[candidate]),
                                             state.best_score)
                state.confirm_steps += confirmation.env_steps
                state.confirmations.append(confirmation.as_dict())
                if confirmation.passed:
                    state.best = confirmation.as_dict()
                    state.best_steps = [state.env_steps, state.eval_steps + state.confirm_steps]
                    _save_best(checkpoints / f"best{ckpt.SUFFIX}", pop, confirmation, state, recorded)
            state.eval_time += time.perf_counter() - judged
            state.reached_target = bool(target is not None and state.best_score >= target)

            # 3. Report: one record to every logger (metrics.csv, the table, TensorBoard, W&B).
            record = GenerationRecord.capture(state, pop, fitness, train_return, confirmation,
                                              state.wall_time + time.perf_counter() - started,
                                              UpdateStats.combine(updates), train_rate)
            loggers.write(record)
            if observer is not None:
                observer(pop, record)
            log.info("generation %d: %d training + %d evaluation env steps, %.1f s, selection fitness %s, "
                     "candidate %d (%s)%s", state.generation, state.env_steps, state.eval_steps + state.confirm_steps,
                     record.wall_time, np.round(fitness, 2).tolist(), candidate, pop.arch.describe(candidate),
                     "" if confirmation is None else f" confirmed {confirmation.describe()}")
            state.history = [h + [float(f)] for h, f in zip(state.history, fitness)]

            # 4. Evolve: tournament with elitism picks parents (ties: the smaller network), then each
            #    non-elite child mutates.
            parents = tournament_select(fitness, evo.tournament_size, evo.elitism, gens.rng,
                                        pop.arch.num_weights(pop.net.tower.features))
            pop.gather(parents)
            state.history = [list(state.history[i]) for i in parents]
            protected = {0} if evo.elitism else set()
            state.mutations = mutator.mutate(pop, protected=protected)
            collector.hand_over([parents[p] == p and p in protected for p in range(size)])
            state.parents = parents.tolist()
            state.generation += 1

            # 5. Checkpoint the population as the next generation starts from it.
            state.wall_time += time.perf_counter() - started
            _save_run(checkpoints / f"latest{ckpt.SUFFIX}", pop, state, recorded, gens, collector)
            if config.checkpoint.keep and state.generation % config.checkpoint.keep == 0:
                _save_run(checkpoints / f"gen_{state.generation:04d}{ckpt.SUFFIX}", pop, state, recorded, gens,
                          collector)
            progress.update(task, gen=state.generation, best=_best_text(state))
            release_free_memory()  # what this generation's resized tensors left in the heap

    best = state.best_confirmation
    outcome = f"reached target {target:g}" if state.reached_target else "step budget spent"
    confirmed = ("nothing confirmed" if best is None else
                 f"confirmed best {best.describe()} over {best.episodes} fresh episodes ({actions} actions) "
                 f"at generation {best.generation}")
    evaluated = state.eval_steps + state.confirm_steps
    log.info("%s: %s; %d training + %d evaluation env steps, %.1f s (%.1f s evaluating)", outcome, confirmed,
             state.env_steps, evaluated, state.wall_time, state.eval_time)
    best_path = checkpoints / f"best{ckpt.SUFFIX}"
    console.print(summary_panel(outcome, best, tuple(state.best_steps) if state.best_steps else None, state.env_steps,
                                evaluated, state.wall_time, run_dir, best_path if best_path.exists() else None,
                                evo.deterministic))
    if config.plot.on_finish:
        plot_on_finish(run_dir, console)
    env.close()
    judge.close()
    return TrainResult(run_dir, state.generation, state.env_steps, evaluated, state.wall_time, best,
                       state.reached_target, target)


def _best_text(state: RunState) -> str:
    best = state.best_confirmation
    return "-" if best is None else f"{best.score:.1f}±{best.std_error:.1f}"
