"""Learning quality: each preset trained at rl-zoo3's per-agent budget, against rl-zoo3's published PPO.

rl-zoo3 reports one PPO agent trained for a budget of env steps; evorl trains a population, so
each member gets that budget: `max_steps = budget x budget-scale x population.size`. The run
goes on past the preset's target (the target only marks "time to target"), and the table shows:

  confirmed best ± SE   the run's confirmed best (fresh episodes, `evolution.confirm_episodes`)
  rl-zoo3 PPO           rl-zoo3's benchmark.md figure for PPO at that budget (mean ± std over its
                        evaluation episodes; HalfCheetah and Hopper were published for -v3)
  env steps             training env steps, all members; evaluation steps are counted apart
  wall                  wall-clock seconds of the whole run, evaluation included
  steps/s               training env steps per second of training (wall minus evaluation)
  to target             wall seconds and training env steps until a confirmed score reached the target

    python benchmarks/learning.py                                  # every preset, full budget (hours)
    python benchmarks/learning.py --env lunarlander --seed 1
    python benchmarks/learning.py --budget-scale 0.02              # a short run each: throughput
    python benchmarks/learning.py --env hopper --set population.size=8

Runs are written under --out (default /tmp/evorl-learning), one directory per preset and seed.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from rich.console import Console

from evorl_cli.cli import CONF_DIR
from evorl_cli.config import build_train_config
from evorl_cli.train import train


@dataclass(frozen=True)
class Reference:
    """rl-zoo3's published PPO result (benchmark.md) and the budget it was reached at."""

    label: str
    score: float
    spread: float  # ± as published
    budget: int  # env steps of the one agent


REFERENCES = {
    "lunarlander": Reference("LunarLander", 242.0, 32.0, 1_000_000),
    "lunarlander_continuous": Reference("LunarLanderContinuous", 271.0, 32.0, 1_000_000),
    "halfcheetah": Reference("HalfCheetah (v3)", 5819.0, 664.0, 1_000_000),
    "hopper": Reference("Hopper (v3)", 2410.0, 10.0, 1_000_000),
    "acrobot": Reference("Acrobot", -73.5, 18.0, 1_000_000),
    "pendulum": Reference("Pendulum", -172.0, 104.0, 100_000),
    "cartpole": Reference("CartPole", 500.0, 0.0, 100_000),
}


def preset_config(name: str, seed: int, budget_scale: float, extra: list[str]):
    """The preset's config with the per-member budget set and the target lifted (the run uses its
    whole budget; the preset's target is returned apart)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        base = build_train_config(compose(config_name="train", overrides=[f"env={name}", *extra]))
        per_member = max(1, int(REFERENCES[name].budget * budget_scale))
        overrides = [f"env={name}", f"seed={seed}", f"max_steps={per_member * base.population.size}",
                     "env.target=1e18", "progress=false", *extra]
        return build_train_config(compose(config_name="train", overrides=overrides)), base.env.target


def run_preset(name: str, seed: int, budget_scale: float, extra: list[str], out: Path) -> dict:
    config, target = preset_config(name, seed, budget_scale, extra)
    reached: dict = {}

    def watch(_pop, record) -> None:
        if not reached and record.best is not None and target is not None and record.best.score >= target:
            reached.update(wall=record.wall_time, steps=record.env_steps, generation=record.generation)

    started = time.perf_counter()
    result = train(config, out / f"{name}_seed{seed}", Console(quiet=True), observer=watch)
    wall = time.perf_counter() - started
    best = result.best
    row = {"env": name, "seed": seed, "population": config.population.size, "max_steps": config.max_steps,
           "env_steps": result.env_steps, "eval_steps": result.eval_steps, "wall": wall,
           "train_seconds": result.wall_time - _eval_time(out / f"{name}_seed{seed}"),
           "best": None if best is None else best.score, "best_se": None if best is None else best.std_error,
           "target": target, "to_target": reached or None}
    with open(out / "results.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row


def _eval_time(run_dir: Path) -> float:
    """Seconds the run spent evaluating, from the last row of its metrics.csv."""
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    header, last = lines[0].split(","), lines[-1].split(",")
    return float(last[header.index("eval_time")])


def table(rows: list[dict]) -> str:
    head = (f"{'env':<22} {'confirmed best':>15} {'rl-zoo3 PPO':>13} {'budget':>7} {'env steps':>10} "
            f"{'wall':>7} {'steps/s':>7} {'to target':>16}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ref = REFERENCES[r["env"]]
        best = "-" if r["best"] is None else f"{r['best']:.1f} ± {r['best_se']:.1f}"
        zoo = f"{ref.score:g} ± {ref.spread:g}"
        budget = f"{r['max_steps'] // r['population'] / 1e6:g}M"
        rate = r["env_steps"] / max(r["train_seconds"], 1e-9)
        to = r["to_target"]
        target = "-" if not to else f"{to['wall']:.0f} s, {to['steps'] / 1e6:.2f}M"
        lines.append(f"{ref.label:<22} {best:>15} {zoo:>13} {budget:>7} {r['env_steps']:>10,} "
                     f"{r['wall']:>6.0f}s {rate:>7,.0f} {target:>16}")
    lines.append("budget: per member (max_steps / population.size); env steps: training, all members")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=list(REFERENCES), choices=list(REFERENCES))
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="fraction of rl-zoo3's per-agent budget each member gets (1: the full budget)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("/tmp/evorl-learning"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.env:
        for seed in args.seed:
            row = run_preset(name, seed, args.budget_scale, args.set, args.out)
            rows.append(row)
            best = "nothing confirmed" if row["best"] is None else f"{row['best']:.1f} ± {row['best_se']:.1f}"
            print(f"{name} seed {seed}: confirmed best {best}, {row['env_steps']:,} env steps, "
                  f"{row['wall']:.0f} s", flush=True)
    print()
    print(table(rows))
    if not math.isclose(args.budget_scale, 1.0):
        print(f"budget scale {args.budget_scale:g}: not rl-zoo3's budget; compare scores only at 1")


if __name__ == "__main__":
    main()
