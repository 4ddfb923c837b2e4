"""Stable-Baselines3's PPO with rl-zoo3's tuned Hopper hyperparameters, on this machine: the
reference for the README's Hopper row (what one PPO agent with the published settings learns here).

rl-zoo3's hyperparams/ppo.yml for Hopper: 1 env, VecNormalize (observations and rewards, the
reward statistics discounted with the agent's gamma), n_steps 512, batch_size 32, 5 epochs,
lr 9.80828e-05, gamma 0.999, gae_lambda 0.99, clip 0.2, ent_coef 0.00229519, vf_coef 0.835671,
max_grad_norm 0.7, log_std_init -2, ortho_init False, ReLU, separate [256, 256] actor and critic.
The Hopper preset started from these settings; since they stood still here, in evorl and in SB3
alike, `conf/env/hopper.yaml` now starts from CleanRL's PPO defaults instead. Run evorl with the
old ones to compare:

    evorl train env=hopper algo.rollout_steps=512 algo.batch_size=32 algo.update_epochs=5 \
        algo.lr=0.000098 algo.lr_schedule=constant algo.gamma=0.999 algo.gae_lambda=0.99 \
        algo.clip_vloss=false algo.ent_coef=0.0023 algo.vf_coef=0.84 algo.max_grad_norm=0.7 \
        algo.action_std_init=0.135 'net.hidden_sizes=[256,256]' net.activation=relu \
        net.init=uniform evolution.evo_steps=16384

Needs stable-baselines3 (not an evorl dependency; `pip install stable-baselines3` next to the
CPU torch). Prints, every 16,384 steps, the mean return and length of the training episodes that
ended in that window: a standing policy shows returns near 1,000 over 1,000-step episodes.

    python benchmarks/sb3_hopper.py --steps 1000000 --seed 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

WINDOW = 16_384  # steps per printed line (an evorl Hopper generation per member)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: as evorl's torch_threads=1 runs)")
    args = parser.parse_args()

    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize
    except ImportError:
        raise SystemExit("error: this reference needs stable-baselines3: pip install stable-baselines3") from None

    torch.set_num_threads(args.threads)
    gamma = 0.999
    env = VecNormalize(make_vec_env(args.env, n_envs=1, seed=args.seed), gamma=gamma)

    class Report(BaseCallback):
        """One line per window: mean training return and length of the episodes that ended in it."""

        def __init__(self) -> None:
            super().__init__()
            self.started = time.perf_counter()
            self.window: list[tuple[float, int]] = []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # SB3's Monitor: the raw (unnormalised) return
                    self.window.append((info["episode"]["r"], info["episode"]["l"]))
            if self.num_timesteps % WINDOW == 0 and self.window:
                returns, lengths = np.array(self.window).T
                print(f"{self.num_timesteps:>9,} steps {time.perf_counter() - self.started:6.0f} s  "
                      f"return {returns.mean():7.1f} (max {returns.max():7.1f})  length {lengths.mean():6.0f}",
                      flush=True)
                self.window = []
            return True

    model = PPO("MlpPolicy", env, n_steps=512, batch_size=32, gamma=gamma, learning_rate=9.80828e-05,
                ent_coef=0.00229519, clip_range=0.2, n_epochs=5, gae_lambda=0.99, max_grad_norm=0.7,
                vf_coef=0.835671, seed=args.seed, device="cpu",
                policy_kwargs=dict(log_std_init=-2, ortho_init=False, activation_fn=torch.nn.ReLU,
                                   net_arch=dict(pi=[256, 256], vf=[256, 256])))
    model.learn(args.steps, callback=Report())


if __name__ == "__main__":
    main()
