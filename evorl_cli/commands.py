"""`evorl eval` and `evorl inspect`: read a checkpoint and report on it."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from evorl_cli import checkpoint as ckpt
from evorl_cli.agent import load_member
from evorl_cli.config import GivenEnv, to_dataclass
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.errors import EvorlError
from evorl_cli.fitness import Confirmation, EvalResult, evaluate


def run_eval(cfg: DictConfig, console: Console) -> EvalResult:
    """Play fresh episodes with one member and print mean return ± standard error (per-episode
    rows with `per_episode=true`). By default it plays as many episodes, and acts the same way
    (deterministic or sampled), as the run's confirmation did, so the two figures compare."""
    loaded = load_member(cfg.ckpt, cfg.member, cfg.device, cfg.trust_checkpoint,
                         given=to_dataclass(GivenEnv, cfg.env))
    evo = loaded.config.evolution
    episodes = evo.confirm_episodes if cfg.episodes is None else int(cfg.episodes)
    if episodes < 1:
        raise EvorlError(f"episodes={episodes}: must be at least 1")
    deterministic = loaded.deterministic if cfg.deterministic is None else bool(cfg.deterministic)
    env = EnvBatch(loaded.config.env, episodes)
    gen = torch.Generator(device=loaded.population.device)
    gen.manual_seed(cfg.seed)
    try:
        result = evaluate(loaded.population, env, episodes, cfg.seed, gen, deterministic, cfg.max_steps)
    finally:
        env.close()
    console.print(f"{loaded.config.env.id} · member {loaded.member} · {loaded.checkpoint.path}", highlight=False)
    if loaded.confirmed is not None:
        c = loaded.confirmed
        console.print(f"confirmed in training: {c.score:.2f} ± {c.std_error:.2f} over {c.episodes} "
                      f"episodes at generation {c.generation}", highlight=False)
    if cfg.per_episode:
        table = Table()
        for col in ("episode", "seed", "return", "length"):
            table.add_column(col, justify="right")
        for i, (ret, length) in enumerate(zip(result.returns[0], result.lengths[0])):
            table.add_row(str(i), str(cfg.seed + i), f"{ret:.2f}", str(int(length)))
        console.print(table)
    actions = "deterministic" if deterministic else "sampled"
    runs_choice = "as the run evaluated" if deterministic == loaded.deterministic else "the run evaluated " + (
        "deterministic" if loaded.deterministic else "sampled")
    console.print(f"mean return {result.fitness[0]:.2f} ± {result.std_error[0]:.2f} (standard error; std "
                  f"{result.returns[0].std(ddof=1) if episodes > 1 else 0.0:.2f}) over {episodes} episodes "
                  f"(seeds {cfg.seed}..{cfg.seed + episodes - 1}, {actions} actions, {runs_choice})",
                  highlight=False)
    return result


def run_inspect(cfg: DictConfig, console: Console) -> None:
    """Run summary and, per member, fitness history, hyperparameters and architecture."""
    checkpoint = ckpt.load(cfg.ckpt, prefer="latest")
    meta = checkpoint.meta
    config = checkpoint.config
    state = meta.get("state", {})
    console.print(f"[bold]{checkpoint.path}[/] · format {meta['format_version']} · {meta.get('kind', '?')}")
    console.print(f"env {config.env.id} · population {config.population.size} · seed {config.seed} · "
                  f"generation {state.get('generation', meta.get('generation'))} · "
                  f"{state.get('env_steps', meta.get('env_steps', 0)):,} training env steps "
                  f"(+{state.get('eval_steps', 0) + state.get('confirm_steps', 0):,} evaluating) · "
                  f"{state.get('wall_time', 0.0):.1f} s", highlight=False)
    recorded = state.get("best") or meta.get("confirmed")
    if recorded:
        best = Confirmation.from_dict(recorded)
        screen = (f"its screen {best.screen.describe()}" if best.remeasured
                  else "the run's first confirmation, its screen")
        console.print(f"confirmed best {best.describe()} over {best.episodes} episodes at generation "
                      f"{best.generation} ({screen}, selection fitness {best.selection_fitness:.2f})",
                      highlight=False)
    table = Table(show_edge=False)
    tuned = sorted(config.hp_config) or list(meta["members"][0]["hyperparameters"])
    for col in ("member", "selection fitness (latest last)", "architecture", *tuned):
        table.add_column(col)
    arch = ckpt.member_architecture(meta["members"])
    for p, member in enumerate(meta["members"]):
        history = member.get("fitness_history") or []
        shown = ", ".join(f"{f:.1f}" for f in history[-6:])
        table.add_row(str(p), ("… " if len(history) > 6 else "") + shown, arch.describe(p),
                      *[f"{member['hyperparameters'][k]:.3g}" for k in tuned])
    console.print(table)
