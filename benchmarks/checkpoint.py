"""Checkpoint size and save/load time for populations of 4 and 64 (Acrobot MLP 64x64), beside the
common baseline of pickling the same state with `torch.save` (what AgileRL checkpoints are).

    python benchmarks/checkpoint.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from evorl_cli import checkpoint as ckpt
from evorl_cli.config import build_train_config
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.population import Population


def timed(fn, repeat: int = 5) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    print(f"{'members':>8} {'params/member':>14} {'file KiB':>9} {'save ms':>8} {'load ms':>8} "
          f"{'torch.save KiB':>15} {'torch.save ms':>14}")
    for size in (4, 64):
        config = build_train_config({"population": {"size": size}})
        env = EnvBatch(config.env, 1)
        pop = Population.create(config, env.obs_dim, env.action, torch.device("cpu"), torch.Generator().manual_seed(0))
        tensors, meta = ckpt.population_payload(pop)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"latest{ckpt.SUFFIX}"
            save_s = timed(lambda: ckpt.save(path, tensors, {**meta, "kind": "population"}))
            load_s = timed(lambda: ckpt.load(path))
            pickled = Path(tmp) / "population.pt"
            pickle_s = timed(lambda: torch.save({"tensors": tensors, "meta": meta}, pickled))
            print(f"{size:>8} {pop.net.num_params:>14,} {path.stat().st_size / 1024:>9.0f} {save_s * 1e3:>8.1f} "
                  f"{load_s * 1e3:>8.1f} {pickled.stat().st_size / 1024:>15.0f} {pickle_s * 1e3:>14.1f}")


if __name__ == "__main__":
    main()
