"""Training throughput (env steps per second, rollout + PPO update) of the batched population,
beside the same work done one member at a time, in one run.

    python benchmarks/throughput.py                                  # Acrobot MLP, 4 members x 8 envs
    python benchmarks/throughput.py --env pendulum --members 4 --envs 16
    python benchmarks/throughput.py --device cuda
    python benchmarks/throughput.py --loggers csv,tensorboard         # + whole runs, one per logger set

With --loggers, it also runs `evorl train` itself (in process) once per logger choice, alternating
them --repeats times, and reports training env steps per second of wall time outside evaluation:
PPO, the learner's diagnostics, the loggers, selection and checkpoints.

The member-by-member baseline runs the same engine with a population of one, once per member:
what training members one after another (as AgileRL does) costs on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from rich.console import Console

from evorl_cli import checkpoint as ckpt
from evorl_cli.cli import CONF_DIR
from evorl_cli.config import build_train_config
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.population import Population
from evorl_cli.ppo import ppo_update
from evorl_cli.rollout import RolloutCollector, members_first
from evorl_cli.train import resolve_device, train


def make_config(env: str, net: str, members: int, envs: int, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("train", overrides=[f"env={env}", f"net={net}", f"population.size={members}",
                                          f"env.num_envs={envs}", f"evolution.tournament_size={min(2, members)}",
                                          *overrides])
    return build_train_config(cfg)


def measure(config, device: torch.device, rollouts: int, warmup: int = 2) -> tuple[float, float, float]:
    """Env steps per second of `rollouts` rollout+update cycles (after `warmup` untimed ones), and
    the seconds per cycle spent collecting and updating."""
    size, envs = config.population.size, config.env.num_envs
    env = EnvBatch(config.env, size * envs)
    gen = torch.Generator(device=device).manual_seed(0)
    pop = Population.create(config, env.obs_dim, env.action, device, torch.Generator().manual_seed(0))
    collector = RolloutCollector(env, size, envs, config.algo.rollout_steps, device)
    collector.reset(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    collecting = updating = 0.0
    for i in range(warmup + rollouts):
        sync()
        start = time.perf_counter()
        ro = collector.collect(pop, gen)
        sync()
        collected = time.perf_counter()
        ppo_update(pop, ro, config.algo, gen)
        pop.obs_norm.update(members_first(ro.raw_obs))
        sync()
        if i >= warmup:
            collecting += collected - start
            updating += time.perf_counter() - collected
    env.close()
    rate = rollouts * size * envs * config.algo.rollout_steps / (collecting + updating)
    return rate, collecting / rollouts, updating / rollouts


def training_rate(config, logger: str, generations: int) -> tuple[float, float]:
    """Training env steps per second of a whole `train` run with `logger` (csv, tensorboard, wandb
    or several joined by '+'), evaluation time excluded, and the share of that time spent in the
    loggers' `write` (timed directly, so it reads true on a busy machine); W&B runs offline."""
    import os

    from evorl_cli.records import Loggers

    spent = [0.0]
    write = Loggers.write

    def timed_write(self, record):
        start = time.perf_counter()
        write(self, record)
        spent[0] += time.perf_counter() - start

    os.environ.setdefault("WANDB_MODE", "offline")
    for name in ("tensorboard", "wandb"):
        getattr(config.logger, name).enabled = name in logger.split("+")
    config.plot.on_finish = False
    config.progress = False
    steps = config.population.size * config.env.num_envs * config.algo.rollout_steps
    per_generation = -(-config.evolution.evo_steps // (config.env.num_envs * config.algo.rollout_steps)) * steps
    config.max_steps = generations * per_generation
    Loggers.write = timed_write
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            result = train(config, Path(run_dir), Console(quiet=True))
            state = ckpt.load(run_dir, prefer="latest").meta["state"]
    finally:
        Loggers.write = write
    training = state["wall_time"] - state["eval_time"]
    return result.env_steps / training, spent[0] / training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="acrobot")
    parser.add_argument("--net", default="mlp")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--envs", type=int, default=8, help="envs per member")
    parser.add_argument("--rollouts", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--loggers", default=None,
                        help="also time whole runs with these logger choices, e.g. csv,tensorboard (or csv,tensorboard+wandb)")
    parser.add_argument("--generations", type=int, default=3, help="generations per whole run (--loggers)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per logger choice, alternated (--loggers)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. algo.update_epochs=10")
    args = parser.parse_args()
    device = resolve_device(args.device)

    batched = make_config(args.env, args.net, args.members, args.envs, args.overrides)
    single = make_config(args.env, args.net, 1, args.envs, args.overrides)
    batched_rate, collect_s, update_s = measure(batched, device, args.rollouts)
    # One member at a time: the same total work, P separate populations of one.
    per_member = [measure(single, device, args.rollouts)[0] for _ in range(args.members)]
    sequential_rate = args.members / sum(1.0 / r for r in per_member)

    a = batched.algo
    print(f"{batched.env.id} · net={args.net} · {args.members} members x {args.envs} envs · "
          f"rollout {a.rollout_steps} steps · batch {a.batch_size} · {a.update_epochs} epochs · {device}")
    print(f"  batched population : {batched_rate:>10,.0f} train env-steps/s")
    print(f"  member by member   : {sequential_rate:>10,.0f} train env-steps/s")
    print(f"  speed-up           : {batched_rate / sequential_rate:>10.2f}x")
    print(f"  batched, per rollout of {args.members * args.envs * a.rollout_steps:,} env steps: "
          f"collect {collect_s * 1e3:.1f} ms, PPO update {update_s * 1e3:.1f} ms")
    if args.loggers:
        choices = args.loggers.split(",")
        rates: dict[str, list[float]] = {c: [] for c in choices}
        shares: dict[str, list[float]] = {c: [] for c in choices}
        for _ in range(args.repeats):  # alternated, so a change in the machine's load hits every choice alike
            for choice in choices:
                config = make_config(args.env, args.net, args.members, args.envs,
                                     ["evolution.selection=train", "evolution.confirm_episodes=10", *args.overrides])
                rate, share = training_rate(config, choice, args.generations)
                rates[choice].append(rate)
                shares[choice].append(share)
        base = statistics.median(rates[choices[0]])
        print(f"  whole runs, {args.generations} generations each, selection=train, evaluation time excluded "
              f"(median of {args.repeats}, alternated):")
        for choice in choices:
            median = statistics.median(rates[choice])
            print(f"    logger={choice:<18}: {median:>10,.0f} train env-steps/s ({median / base - 1:+.1%} vs "
                  f"{choices[0]}; runs: {', '.join(f'{r:,.0f}' for r in rates[choice])}); "
                  f"loggers' write: {statistics.median(shares[choice]):.3%} of training time")


if __name__ == "__main__":
    main()
