"""Which selection fitness should rank members? Measured two ways on the same env, in one run.

    python benchmarks/selection.py --env acrobot
    python benchmarks/selection.py --env pendulum_novel --net lstm --seeds 0 1 2

1. Ranking. One training run (selection=eval, 10 episodes), with the target switched off for
   `--generations` generations. At every generation each member is also measured by an oracle:
   100 fresh episodes, with deterministic and with sampled actions. Each candidate selection
   fitness (training returns; 10, 5 or 3 evaluation episodes; 10 cut at 200 or 300 steps) is scored by
     - regret: the oracle score of the truly best member minus that of the member it ranks first;
     - agreement: the share of member pairs whose order it gets right, among pairs the oracle
       separates by more than two standard errors.
   The oracle's own deterministic-versus-sampled scores show which way of acting is better.
2. Time to a confirmed target. For each option and seed, `evorl train` with the env's defaults
   and that selection fitness: training and evaluation env steps and wall seconds until a confirmed
   score reaches the target, and the best checkpoint on 100 fresh episodes (seeds 12345...).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

OPTIONS = {"train": ["evolution.selection=train", "evolution.selection_max_steps=null"],
           "eval10": ["evolution.selection=eval", "evolution.selection_episodes=10", "evolution.selection_max_steps=null"],
           "eval5": ["evolution.selection=eval", "evolution.selection_episodes=5", "evolution.selection_max_steps=null"],
           "eval3": ["evolution.selection=eval", "evolution.selection_episodes=3", "evolution.selection_max_steps=null"],
           "eval10cut200": ["evolution.selection=eval", "evolution.selection_episodes=10",
                            "evolution.selection_max_steps=200"],
           "eval10cut300": ["evolution.selection=eval", "evolution.selection_episodes=10",
                            "evolution.selection_max_steps=300"]}
# The options the ranking run measures beside its own (train, eval10): (episodes, cut) each.
PROBES = {"eval5": (5, None), "eval3": (3, None), "eval10cut200": (10, 200), "eval10cut300": (10, 300)}
ORACLE_EPISODES = 100
ORACLE_BLOCK = 3  # seeds of a block no run uses (see fitness.SEED_BLOCK)


def compose(env: str, net: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from evorl_cli.cli import CONF_DIR
    from evorl_cli.config import build_train_config

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = hydra_compose("train", overrides=[f"env={env}", f"net={net}", "progress=false", *overrides])
    return build_train_config(cfg)


def ranking(env: str, net: str, seed: int, generations: int) -> None:
    from rich.console import Console

    from evorl_cli.envs.batch import EnvBatch
    from evorl_cli.fitness import SEED_BLOCK, episode_cap, evaluate
    from evorl_cli.train import train

    config = compose(env, net, [f"seed={seed}", "env.target=1e9", *OPTIONS["eval10"]])
    size = config.population.size
    per_generation = size * config.env.num_envs * config.algo.rollout_steps * -(-config.evolution.evo_steps // (
        config.env.num_envs * config.algo.rollout_steps))
    config.max_steps = generations * per_generation
    oracle_env = EnvBatch(config.env, size * ORACLE_EPISODES)
    probe_envs = {name: EnvBatch(config.env, size * episodes) for name, (episodes, _) in PROBES.items()}
    gen = torch.Generator().manual_seed(1234)
    rows = []

    def observe(pop, record) -> None:
        g = record.generation
        seeds = [ORACLE_BLOCK * SEED_BLOCK + g * 1000 + j for j in range(ORACLE_EPISODES)]
        det = evaluate(pop, oracle_env, ORACLE_EPISODES, seeds, gen, True, config.evolution.eval_max_steps)
        smp = evaluate(pop, oracle_env, ORACLE_EPISODES, seeds, gen, False, config.evolution.eval_max_steps)
        probes = {}
        for name, env in probe_envs.items():
            episodes, cut = PROBES[name]
            probe_seeds = [ORACLE_BLOCK * SEED_BLOCK + 500_000 + g * 10 + j for j in range(episodes)]
            probes[name] = evaluate(pop, env, episodes, probe_seeds, gen, config.evolution.deterministic,
                                    episode_cap(cut, config.evolution.eval_max_steps)).fitness
        rows.append({"det": det, "smp": smp, "train": np.asarray(record.train_return, dtype=float),
                     "eval10": np.asarray(record.fitness, dtype=float), **probes})

    with tempfile.TemporaryDirectory() as run_dir:
        train(config, Path(run_dir), Console(quiet=True), observer=observe)
    oracle_env.close()
    for env_batch in probe_envs.values():
        env_batch.close()

    oracle_kind = "det" if config.evolution.deterministic else "smp"
    print(f"\n1. ranking: {env} net={net} seed={seed}, {len(rows)} generations of {size} members, oracle "
          f"{ORACLE_EPISODES} fresh episodes ({'deterministic' if oracle_kind == 'det' else 'sampled'} actions, "
          "the run's choice)")
    print(f"{'selection fitness':<18} {'mean regret':>12} {'top pick right':>15} {'pair agreement':>15}")
    for name in OPTIONS:
        regrets, right, agree, pairs = [], 0, 0, 0
        for row in rows:
            truth, se = row[oracle_kind].fitness, row[oracle_kind].std_error
            guess = np.nan_to_num(row[name], nan=-np.inf)
            pick = int(np.argmax(guess))
            regrets.append(truth.max() - truth[pick])
            right += int(truth[pick] >= truth.max() - 2 * se[pick])
            for a in range(size):
                for b in range(a + 1, size):
                    if abs(truth[a] - truth[b]) > 2 * np.hypot(se[a], se[b]):
                        pairs += 1
                        agree += int((guess[a] - guess[b]) * (truth[a] - truth[b]) > 0)
        share = f"{agree / pairs:.0%} of {pairs}" if pairs else "no separable pairs"
        print(f"{name:<18} {np.mean(regrets):>12.2f} {right / len(rows):>15.0%} {share:>15}")
    det_best = [row["det"].fitness.max() for row in rows]
    smp_best = [row["smp"].fitness.max() for row in rows]
    det_all = np.concatenate([row["det"].fitness for row in rows])
    smp_all = np.concatenate([row["smp"].fitness for row in rows])
    print(f"acting: best member per generation, deterministic {np.mean(det_best):.1f} vs sampled "
          f"{np.mean(smp_best):.1f} (mean over generations); every member: deterministic better in "
          f"{np.mean(det_all > smp_all):.0%}, last generation best {det_best[-1]:.1f} vs {smp_best[-1]:.1f}")


def time_to_target(env: str, net: str, seeds: list[int], options: list[str], max_steps: int | None,
                   extra_overrides: list[str]) -> None:
    from rich.console import Console

    from evorl_cli.agent import load_member
    from evorl_cli.envs.batch import EnvBatch
    from evorl_cli.fitness import evaluate
    from evorl_cli.train import train

    print(f"\n2. time to a confirmed target: {env} net={net} {' '.join(extra_overrides)}")
    print(f"{'option':<8} {'seed':>4} {'reached':>8} {'confirmed':>15} {'fresh 100':>15} {'train steps':>12} "
          f"{'eval steps':>11} {'wall s':>7} {'eval %':>7}")
    for option in options:
        walls = []
        for seed in seeds:
            extra = ([f"max_steps={max_steps}"] if max_steps else []) + extra_overrides
            config = compose(env, net, [f"seed={seed}", *OPTIONS[option], *extra])
            with tempfile.TemporaryDirectory() as run_dir:
                started = time.perf_counter()
                result = train(config, Path(run_dir), Console(quiet=True))
                wall = time.perf_counter() - started
                with open(Path(run_dir) / "metrics.csv", newline="") as fh:
                    last = list(csv.DictReader(fh))[-1]
                eval_share = float(last["eval_time"]) / float(last["wall_time"])
                loaded = load_member(run_dir)
                fresh_env = EnvBatch(config.env, 100)
                fresh = evaluate(loaded.population, fresh_env, 100, 12345, torch.Generator().manual_seed(12345),
                                 config.evolution.deterministic, config.evolution.eval_max_steps)
                fresh_env.close()
            walls.append(wall)
            best = result.best
            print(f"{option:<8} {seed:>4} {str(result.reached_target):>8} "
                  f"{best.score:>8.1f} ± {best.std_error:<4.1f} {fresh.fitness[0]:>8.1f} ± {fresh.std_error[0]:<4.1f} "
                  f"{result.env_steps:>12,} {result.eval_steps:>11,} {wall:>7.1f} {eval_share:>7.0%}")
        print(f"{option:<8} median wall {np.median(walls):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="acrobot")
    parser.add_argument("--net", default="mlp")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--generations", type=int, default=8, help="generations of the ranking run")
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--max-steps", type=int, default=None, help="training budget of the timed runs")
    parser.add_argument("--skip-ranking", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run, e.g. evolution.evo_steps=8192")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not args.skip_ranking:
        ranking(args.env, args.net, args.seeds[0], args.generations)
    if not args.skip_timing:
        time_to_target(args.env, args.net, args.seeds, args.options, args.max_steps, args.set)


if __name__ == "__main__":
    main()
