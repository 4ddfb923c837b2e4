"""`env.vector=sync` against `env.vector=async` for the envs we do not batch (Box2D, MuJoCo...).

For each env id, both modes step the same number of sub-envs (the population's `P * N`) with the
same pre-drawn random actions through `EnvBatch` (what training uses: same-step autoreset, final
observations, finiteness checks). The modes alternate, `--repeats` times each, and the best of each
is printed, so load from other processes hits both alike.

    python benchmarks/vector_mode.py --env LunarLander-v3:64 HalfCheetah-v5:4 --steps 500
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from evorl_cli.config import EnvConfig
from evorl_cli.envs.batch import EnvBatch


def steps_per_second(env_id: str, num_envs: int, vector: str, actions: np.ndarray) -> float:
    env = EnvBatch(EnvConfig(name="bench", id=env_id, backend="gymnasium", vector=vector), num_envs)
    try:
        env.reset(0)
        start = time.perf_counter()
        for batch in actions:
            env.step(batch)
        return len(actions) * num_envs / (time.perf_counter() - start)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=["LunarLander-v3:64", "HalfCheetah-v5:4"],
                        help="id:sub-envs (a preset's population.size x env.num_envs)")
    parser.add_argument("--steps", type=int, default=500, help="vector steps to time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'env':<18} {'sub-envs':>8} {'sync steps/s':>13} {'async steps/s':>14} {'async/sync':>10}")
    for spec in args.env:
        env_id, num_envs = spec.rsplit(":", 1)
        num_envs = int(num_envs)
        probe = EnvBatch(EnvConfig(name="bench", id=env_id, backend="gymnasium"), num_envs)
        space, action = probe.env.action_space, probe.action
        probe.close()
        rng = np.random.default_rng(0)
        if action.discrete:
            actions = rng.integers(0, action.n, size=(args.steps, num_envs))
        else:
            actions = rng.uniform(action.low, action.high, size=(args.steps, num_envs, action.n)).astype(np.float32)
        best = {"sync": 0.0, "async": 0.0}
        for _ in range(args.repeats):
            for vector in best:
                best[vector] = max(best[vector], steps_per_second(env_id, num_envs, vector, actions))
        print(f"{env_id:<18} {num_envs:>8} {best['sync']:>13,.0f} {best['async']:>14,.0f} "
              f"{best['async'] / best['sync']:>10.2f}")


if __name__ == "__main__":
    main()
