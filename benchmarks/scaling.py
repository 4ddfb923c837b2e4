"""Cost as the work grows: population size, mixed widths, and a long run, each beside its baseline.

    python benchmarks/scaling.py                          # P = 1 4 16 64 256, Acrobot MLP, 8 envs each
    python benchmarks/scaling.py --sizes 1 16 64 --generations 2 --evo-steps 2048
    python benchmarks/scaling.py --sizes 16 64 256 --generations 2 --set torch_threads=1 net.width_buckets=1
    python benchmarks/scaling.py --widths                 # half at 64 units, half at 256, beside all-64 and all-256
    python benchmarks/scaling.py --long                   # s/generation early vs late in a 2M-step run (minutes)
    python benchmarks/scaling.py --long --long-baseline   # ... and the same run with add-only architecture search

Population scan: each size trains `--generations` whole generations (rollouts, updates, selection
episodes, confirmation, evolution, checkpoints) in its own process, so that its peak resident
memory (VmHWM) is its own. Env-steps/s counts training and evaluation (selection and confirmation)
steps; the baseline is member by member: P generations of a population of one, back to back.

Mixed widths: one population of `--width-size` members with the widths fixed (no selection, no
mutation, so the mix cannot drift), timing what a generation does per member: rollouts, PPO
updates and the selection episodes. The target: half-and-half costs at most the midpoint of
all-64 and all-256, plus 20%. The mixes run twice, in width buckets (the default
`net.width_buckets=2`) and as one batch padded to the widest member (`net.width_buckets=1`), and
half-64-half-128 checks the bucket rule (a 2x split) where the saving is smallest.

Long run: `evorl train env=acrobot env.target=1e9 max_steps=2000000 seed=0` with the default
mutations; seconds per generation over generations 10-19 and 110-119 (or the last ten, when the
run has fewer generations), mean network size (weights, `Architecture.num_weights`) in each
window, and the confirmed best. The baseline (`--long-baseline`) is the same run with `mutation.remove_prob=0`
(architecture search that only adds, the old default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import memory_mib  # noqa: E402  (VmRSS, VmHWM of this process)


def _config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from evorl_cli.cli import CONF_DIR
    from evorl_cli.config import build_train_config

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return build_train_config(compose("train", overrides=overrides))


def _whole_generations(config, generations: int) -> None:
    """Budget `max_steps` for exactly `generations` generations."""
    size, envs, steps = config.population.size, config.env.num_envs, config.algo.rollout_steps
    config.max_steps = generations * size * envs * steps * -(-config.evolution.evo_steps // (envs * steps))


def one_size(env: str, size: int, envs: int, generations: int, evo_steps: int | None, extra: list[str]) -> dict:
    """Train `generations` generations (no early stop) and return the figures of this size."""
    from rich.console import Console

    from evorl_cli.train import train

    overrides = [f"env={env}", f"population.size={size}", f"env.num_envs={envs}", "progress=false",
                 f"evolution.tournament_size={min(2, size)}", "env.target=1e9"]  # never stop early
    if evo_steps:
        overrides.append(f"evolution.evo_steps={evo_steps}")
    config = _config(overrides + extra)
    _whole_generations(config, generations)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        result = train(config, Path(run_dir), Console(quiet=True))
        elapsed = time.perf_counter() - start
    return {"size": size, "seconds_per_generation": elapsed / result.generations,
            "train_steps": result.env_steps, "eval_steps": result.eval_steps,
            "env_steps_per_second": (result.env_steps + result.eval_steps) / elapsed,
            "train_steps_per_second": result.env_steps / elapsed, "peak_mib": memory_mib()[1]}


def _fixed_widths(size: int, widths: list[int], envs: int, rollouts: int, buckets: int = 2):
    """A timer: seconds per member for `rollouts` rollouts + PPO updates + selection episodes of a
    fixed population whose member p has two hidden layers of `widths[p % len(widths)]` units."""
    import torch

    from evorl_cli.envs.batch import EnvBatch
    from evorl_cli.evolve import architecture as surgery
    from evorl_cli.fitness import Judge
    from evorl_cli.population import Population
    from evorl_cli.ppo import ppo_update
    from evorl_cli.rollout import RolloutCollector

    widest = max(widths)
    config = _config([f"population.size={size}", f"env.num_envs={envs}", f"net.hidden_sizes=[{widest},{widest}]",
                      f"net.width_buckets={buckets}"])
    env = EnvBatch(config.env, size * envs, purpose="training")
    gen = torch.Generator().manual_seed(0)
    pop = Population.create(config, env.obs_dim, env.action, torch.device("cpu"), gen, env.image)
    with torch.no_grad():
        for p in range(size):
            for layer in (1, 0):  # narrowest first from the top, so each layer's fan-out is cut too
                width = widths[p % len(widths)]
                if width < widest:
                    surgery.shrink_units(pop.net, pop.params[p], pop.arch, p, layer, width)
    pop.refresh_masks()
    collector = RolloutCollector(env, size, envs, config.algo.rollout_steps, torch.device("cpu"))
    judge = Judge(config.evolution, config.env, size, 0)

    def timed(repeat: int) -> float:
        collector.reset(list(range(repeat * size * envs, (repeat + 1) * size * envs)))
        start = time.perf_counter()
        for _ in range(rollouts):
            ppo_update(pop, collector.collect(pop, gen), config.algo, gen)
        judge.selection_fitness(pop, None, repeat, gen)
        return (time.perf_counter() - start) / size
    return timed


def widths_case(size: int, envs: int, rollouts: int, repeats: int) -> None:
    cases = {"all 64": ([64], 2), "all 256": ([256], 2), "half 64, half 256": ([64, 256], 2),
             "same, padded (1 bucket)": ([64, 256], 1), "half 64, half 128": ([64, 128], 2),
             "same, padded": ([64, 128], 1)}
    timers = {name: _fixed_widths(size, widths, envs, rollouts, buckets) for name, (widths, buckets) in cases.items()}
    # Interleaved, best of `repeats`: a shared machine's load hits every case alike.
    seconds = {name: float("inf") for name in cases}
    for repeat in range(repeats):
        for name, timed in timers.items():
            seconds[name] = min(seconds[name], timed(repeat))
    midpoint = (seconds["all 64"] + seconds["all 256"]) / 2
    print(f"mixed widths · {size} members · {envs} envs each · {rollouts} rollouts + updates + selection episodes")
    print(f"{'case':>24} {'s/member':>10} {'vs midpoint':>12}")
    for name, value in seconds.items():
        print(f"{name:>24} {value:>10.3f} {value / midpoint:>11.2f}x")
    print("(midpoint: of all-64 and all-256; half-64-half-128 is for the bucket rule, not the target)")
    print("target: half-and-half <= 1.20x the midpoint of all-64 and all-256 (issue 15)")


def long_run(overrides: list[str], max_steps: int) -> dict:
    """Seconds per generation along a long default run, and its confirmed best."""
    from rich.console import Console

    from evorl_cli.train import train

    config = _config(["env=acrobot", "env.target=1e9", "progress=false", "seed=0", *overrides])
    config.max_steps = max_steps
    rows = []
    last = [0.0]

    def observe(pop, record) -> None:
        size = pop.arch.num_weights(pop.net.tower.features)
        rows.append((record.generation, record.wall_time - last[0], float(size.mean()), int(pop.params.shape[1])))
        last[0] = record.wall_time

    with tempfile.TemporaryDirectory() as run_dir:
        result = train(config, Path(run_dir), Console(quiet=True), observer=observe)

    def window(picked: list) -> tuple[float, float]:
        return (sum(r[1] for r in picked) / len(picked), sum(r[2] for r in picked) / len(picked))

    # Late: generations 110-120 as the issue measured them, or the last ten when the run is shorter.
    late = [r for r in rows if 110 <= r[0] < 120] or rows[-10:]
    early = rows[10:20] if len(rows) >= 30 else rows[1:2]  # a short run: generation 1 (0 warms up)
    best = result.best
    return {"overrides": overrides, "generations": result.generations, "early": window(early),
            "late": window(late), "late_range": [late[0][0], late[-1][0]],
            "best": None if best is None else [best.score, best.std_error], "peak_mib": memory_mib()[1]}


def _in_process(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="acrobot")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--envs", type=int, default=8, help="envs per member")
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--evo-steps", type=int, help="env steps per member per generation (default: the env's)")
    parser.add_argument("--widths", action="store_true", help="the mixed-width case instead of the population scan")
    parser.add_argument("--width-size", type=int, default=16, help="members in the mixed-width case")
    parser.add_argument("--long", action="store_true", help="the long-run case instead of the population scan")
    parser.add_argument("--long-baseline", action="store_true", help="with --long: also the add-only run")
    parser.add_argument("--max-steps", type=int, default=2_000_000, help="with --long: the training budget")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides for the population scan, e.g. torch_threads=1 net.width_buckets=1")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--long-one", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_size(args.env, args.one, args.envs, args.generations, args.evo_steps, args.set)))
        return
    if args.long_one is not None:
        print(json.dumps(long_run(args.long_one, args.max_steps)))
        return
    if args.widths:
        widths_case(args.width_size, args.envs, rollouts=4, repeats=5)
        return
    if args.long:
        runs = [[]] + ([["mutation.remove_prob=0"]] if args.long_baseline else [])
        print(f"long run · acrobot · {args.max_steps:,} training steps · seed 0")
        print(f"{'run':>22} {'gens':>5} {'s/gen 10-19':>12} {'s/gen late':>10} {'late gens':>9} {'ratio':>6} "
              f"{'size early':>11} {'size late':>10} {'confirmed best':>15} {'peak MiB':>9}")
        for overrides in runs:
            r = _in_process(["--max-steps", str(args.max_steps), "--long-one", *overrides])
            (early, size_early), (late, size_late) = r["early"], r["late"]
            best = "-" if r["best"] is None else f"{r['best'][0]:.1f}±{r['best'][1]:.1f}"
            name = " ".join(overrides) or "default"
            lo, hi = r["late_range"]
            print(f"{name:>22} {r['generations']:>5} {early:>12.2f} {late:>10.2f} {f'{lo}-{hi}':>9} {late / early:>5.2f}x "
                  f"{size_early:>11,.0f} {size_late:>10,.0f} {best:>15} {r['peak_mib']:>9.0f}")
        print("target: s/gen late (110-119) <= 1.25x s/gen 10-19; confirmed best no worse than -79.6±3.0 (issue 15)")
        return

    rows = []
    for size in sorted(set(args.sizes) | {1}):
        extra = (["--evo-steps", str(args.evo_steps)] if args.evo_steps else []) + (["--set", *args.set] if args.set else [])
        rows.append(_in_process(["--one", str(size), "--env", args.env, "--envs", str(args.envs),
                                 "--generations", str(args.generations), *extra]))
    single = next(r for r in rows if r["size"] == 1)["seconds_per_generation"]
    ref = next((r for r in rows if r["size"] == 16), None)
    print(f"{args.env} · {args.envs} envs per member · {args.generations} generations per size · "
          "env-steps count training + evaluation" + (f" · {' '.join(args.set)}" if args.set else ""))
    print(f"{'members':>7} {'s/gen':>7} {'env-steps/s':>11} {'train/s':>8} {'eval share':>10} {'peak MiB':>8} "
          f"{'1-by-1 s/gen':>12} {'speed-up':>8} {'vs P=16':>7}")
    for r in rows:
        baseline = r["size"] * single  # the same generation, one member at a time
        rel = f"{r['env_steps_per_second'] / ref['env_steps_per_second']:.2f}x" if ref else "-"
        share = r["eval_steps"] / max(r["train_steps"] + r["eval_steps"], 1)
        print(f"{r['size']:>7} {r['seconds_per_generation']:>7.2f} {r['env_steps_per_second']:>11,.0f} "
              f"{r['train_steps_per_second']:>8,.0f} {share:>10.0%} {r['peak_mib']:>8.0f} {baseline:>12.2f} "
              f"{baseline / r['seconds_per_generation']:>7.2f}x {rel:>7}")
    print("targets: env-steps/s at P=64 >= 0.9x P=16; peak memory P=64 < 2048 MiB, P=256 < 6144 MiB (issue 15)")


if __name__ == "__main__":
    main()
