"""`evorl eval` and `evorl inspect`: read a checkpoint and report on it."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from evorl_cli import checkpoint as ckpt
from evorl_cli.agent import load_member
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.evaluate import evaluate


def run_eval(cfg: DictConfig, console: Console) -> float:
    """Play `episodes` episodes with one member; print a per-episode table and mean ± std."""
    loaded = load_member(cfg.ckpt, cfg.member, cfg.device)
    env = EnvBatch(loaded.config.env, cfg.episodes)
    gen = torch.Generator(device=loaded.population.device)
    gen.manual_seed(cfg.seed)
    result = evaluate(loaded.population, env, cfg.episodes, cfg.seed, gen, cfg.deterministic, cfg.max_steps)
    env.close()
    trained = "" if loaded.fitness is None else f" · fitness in training {loaded.fitness:.2f}"
    console.print(f"{loaded.config.env.id} · member {loaded.member}{trained} · {loaded.checkpoint.path}")
    table = Table()
    table.add_column("episode", justify="right")
    table.add_column("return", justify="right")
    table.add_column("length", justify="right")
    for i, (ret, length) in enumerate(zip(result.returns[0], result.lengths[0])):
        table.add_row(str(i), f"{ret:.2f}", str(int(length)))
    console.print(table)
    mean, std = float(result.returns.mean()), float(result.returns.std())
    console.print(f"mean return {mean:.2f} ± {std:.2f} over {cfg.episodes} episodes "
                  f"({'deterministic' if cfg.deterministic else 'sampled'} actions)")
    return mean


def run_inspect(cfg: DictConfig, console: Console) -> None:
    """Run summary and, per member, fitness history, hyperparameters and architecture."""
    checkpoint = ckpt.load(cfg.ckpt, prefer="latest")
    meta = checkpoint.meta
    config = checkpoint.config
    state = meta.get("state", {})
    console.print(f"[bold]{checkpoint.path}[/] · format {meta['format_version']} · {meta.get('kind', '?')}")
    console.print(f"env {config.env.id} · population {config.population.size} · seed {config.seed} · "
                  f"generation {state.get('generation', meta.get('generation'))} · "
                  f"{state.get('env_steps', meta.get('env_steps', 0)):,} env steps "
                  f"(+{state.get('eval_steps', 0):,} evaluating) · "
                  f"{state.get('wall_time', 0.0):.1f} s · best fitness "
                  f"{state.get('best_fitness', meta.get('fitness')):.2f}")
    table = Table(show_edge=False)
    tuned = sorted(config.hp_config) or list(meta["members"][0]["hyperparameters"])
    for col in ("member", "fitness (latest last)", "architecture", *tuned):
        table.add_column(col)
    arch = ckpt.member_architecture(meta["members"])
    for p, member in enumerate(meta["members"]):
        history = member.get("fitness_history") or []
        shown = ", ".join(f"{f:.1f}" for f in history[-6:])
        table.add_row(str(p), ("… " if len(history) > 6 else "") + shown, arch.describe(p),
                      *[f"{member['hyperparameters'][k]:.3g}" for k in tuned])
    console.print(table)
