"""Step throughput of the batched NumPy classic-control envs against Gymnasium's SyncVectorEnv.

For each env id, both vector envs run the same number of sub-envs for the same number of
steps with the same pre-drawn random actions (same-step autoreset, episode ends included);
the script prints steps/s, microseconds per sub-env step and the speed-up.

    python benchmarks/env_step.py --envs 32 --steps 2000
"""

from __future__ import annotations

import argparse
import time
import warnings

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from evorl_cli.envs.classic import BATCHED_ENVS, make_batched_env


def time_steps(env: gym.vector.VectorEnv, actions: np.ndarray, seed: int) -> float:
    """Seconds to apply `actions` (one batch per step) after a seeded reset."""
    env.reset(seed=seed)
    step = env.step
    start = time.perf_counter()
    for batch in actions:
        step(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=32, help="sub-envs per vector env")
    parser.add_argument("--steps", type=int, default=2000, help="vector steps to time")
    parser.add_argument("--ids", nargs="*", default=list(BATCHED_ENVS), help="env ids (default: all batched ones)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs is reported")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="gymnasium")  # env-checker chatter

    n, steps = args.envs, args.steps
    print(f"{n} sub-envs x {steps} steps, best of {args.repeats}")
    header = (f"{'env':26s} {'batched steps/s':>16s} {'us/env-step':>12s} "
              f"{'sync steps/s':>13s} {'us/env-step':>12s} {'speed-up':>9s}")
    print(header)
    print("-" * len(header))
    for env_id in args.ids:
        batched = make_batched_env(env_id, n)
        sync = SyncVectorEnv([lambda: gym.make(env_id) for _ in range(n)],
                             autoreset_mode=AutoresetMode.SAME_STEP)
        batched.action_space.seed(args.seed)
        actions = np.stack([batched.action_space.sample() for _ in range(steps)])
        # Fewer steps for the slow reference keep the run short; rates are per step anyway.
        sync_steps = max(1, steps // 4)
        t_batched = min(time_steps(batched, actions, args.seed) for _ in range(args.repeats))
        t_sync = min(time_steps(sync, actions[:sync_steps], args.seed) for _ in range(args.repeats))
        rate_b, rate_s = steps / t_batched, sync_steps / t_sync
        print(f"{env_id:26s} {rate_b:16,.0f} {1e6 / (rate_b * n):12.3f} {rate_s:13,.0f} "
              f"{1e6 / (rate_s * n):12.3f} {rate_b / rate_s:8.1f}x")
        batched.close()
        sync.close()


if __name__ == "__main__":
    main()
