"""Seconds per generation and peak memory as the population grows (same envs per member),
beside the member-by-member baseline: P generations of a population of one, back to back.

    python benchmarks/scaling.py                      # Acrobot MLP, P = 1 4 16 64, 8 envs each
    python benchmarks/scaling.py --sizes 1 4 16 --env cartpole

Each size runs in its own process so that its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def one_size(env: str, size: int, envs: int, generations: int) -> dict:
    """Train `generations` generations (rollouts, updates, evaluation, evolution; no early stop)."""
    import tempfile

    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from evorl_cli.cli import CONF_DIR
    from evorl_cli.config import build_train_config
    from evorl_cli.train import train

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("train", overrides=[f"env={env}", f"population.size={size}", f"env.num_envs={envs}",
                                          f"evolution.tournament_size={min(2, size)}", "progress=false",
                                          "env.target=1e9"])  # never stop early: time whole generations
    config = build_train_config(cfg)
    per_generation = size * envs * config.algo.rollout_steps * -(-config.evolution.evo_steps // (
        envs * config.algo.rollout_steps))
    config.max_steps = generations * per_generation
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        result = train(config, Path(run_dir), Console(quiet=True))
        elapsed = time.perf_counter() - start
    return {"size": size, "seconds_per_generation": elapsed / result.generations,
            "env_steps_per_second": result.env_steps / elapsed,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="acrobot")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--envs", type=int, default=8, help="envs per member")
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_size(args.env, args.one, args.envs, args.generations)))
        return

    rows = []
    for size in sorted(set(args.sizes) | {1}):
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--env", args.env, "--envs",
                              str(args.envs), "--generations", str(args.generations)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    single = next(r for r in rows if r["size"] == 1)["seconds_per_generation"]
    four = next((r for r in rows if r["size"] == 4), None)
    print(f"{args.env} · {args.envs} envs per member · {args.generations} generations per size")
    print(f"{'members':>8} {'s/generation':>13} {'env-steps/s':>12} {'peak RSS MiB':>13} "
          f"{'member-by-member s/gen':>23} {'speed-up':>9} {'vs P=4':>7}")
    for r in rows:
        baseline = r["size"] * single  # the same generation, one member at a time
        rel = f"{r['seconds_per_generation'] / four['seconds_per_generation']:.2f}x" if four else "-"
        print(f"{r['size']:>8} {r['seconds_per_generation']:>13.2f} {r['env_steps_per_second']:>12,.0f} "
              f"{r['peak_rss_mib']:>13.0f} {baseline:>23.2f} {baseline / r['seconds_per_generation']:>8.2f}x {rel:>7}")


if __name__ == "__main__":
    main()
