"""Resident memory over a long run: does anything grow with the generation count?

    python benchmarks/memory.py                      # Acrobot, 4 members, 200 generations
    python benchmarks/memory.py --generations 400 --size 8
    python benchmarks/memory.py --set mutation.architecture=0    # the same without growing networks

Trains with the default mutations (architecture included) and the target switched off, and reads
the process's resident set (VmRSS) and its peak (VmHWM) from /proc at chosen generations.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def memory_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="acrobot")
    parser.add_argument("--size", type=int, default=4)
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--evo-steps", type=int, default=1024, help="env steps per member per generation")
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides, e.g. mutation.architecture=0")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from evorl_cli.cli import CONF_DIR
    from evorl_cli.config import build_train_config
    from evorl_cli.train import train

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("train", overrides=[f"env={args.env}", f"population.size={args.size}", "progress=false",
                                          f"evolution.evo_steps={args.evo_steps}", "env.target=1e9", *args.set])
    config = build_train_config(cfg)
    per_generation = args.size * config.env.num_envs * config.algo.rollout_steps * -(-args.evo_steps // (
        config.env.num_envs * config.algo.rollout_steps))
    config.max_steps = args.generations * per_generation
    marks = sorted({1, 10, 20, 50, 100, args.generations // 2, args.generations})
    readings: dict[int, tuple[float, float, float]] = {}
    started = time.perf_counter()

    def observe(pop, record) -> None:
        generation = record.generation + 1
        if generation in marks:
            readings[generation] = (*memory_mib(), time.perf_counter() - started)
            widths = [pop.arch.describe(p) for p in range(pop.size)]
            print(f"generation {generation:>4}: resident {readings[generation][0]:7.1f} MiB, peak "
                  f"{readings[generation][1]:7.1f} MiB, {readings[generation][2]:6.1f} s; members {widths}",
                  flush=True)

    with tempfile.TemporaryDirectory() as run_dir:
        train(config, Path(run_dir), Console(quiet=True), observer=observe)
    if 20 in readings and args.generations in readings:
        early, late = readings[20], readings[args.generations]
        print(f"peak resident memory at generation 20: {early[1]:.1f} MiB, at generation {args.generations}: "
              f"{late[1]:.1f} MiB ({late[1] / early[1] - 1:+.1%}); resident now {late[0]:.1f} MiB")


if __name__ == "__main__":
    main()
