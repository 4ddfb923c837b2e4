"""Running observation normalisation, one set of statistics per member."""

from __future__ import annotations

import torch

CLIP = 10.0
EPS = 1e-8


def merge_moments(mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor,
                  batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Parallel Welford: fold `batch` [P, B, ...] into per-member running `mean`/`var` [P, ...] and
    `count` [P]; returns the new (mean, var, count)."""
    n = batch.shape[1]
    batch_mean, batch_var = batch.mean(dim=1), batch.var(dim=1, unbiased=False)
    total = count + n
    shape = (-1,) + (1,) * (mean.dim() - 1)  # broadcast per-member counts over feature dims
    delta = batch_mean - mean
    new_mean = mean + delta * (n / total).view(shape)
    m2 = var * count.view(shape) + batch_var * n + delta.square() * (count * n / total).view(shape)
    return new_mean, m2 / total.view(shape), total


class ObsNormalizer:
    """Per-member running mean/variance (parallel Welford), updated from training rollouts only.

    The statistics belong to the member: selection copies them with its parameters and checkpoints
    save them, so a member always sees observations scaled the way it was trained on.
    """

    def __init__(self, size: int, obs_dim: int, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled
        self.mean = torch.zeros(size, obs_dim, device=device)
        self.var = torch.ones(size, obs_dim, device=device)
        self.count = torch.zeros(size, device=device)
        self._refresh()

    def _refresh(self) -> None:
        # Shift and scale change only when the statistics do, not at every env step.
        self._shift = self.mean.unsqueeze(1)
        self._scale = torch.rsqrt(self.var + EPS).unsqueeze(1)

    def __call__(self, obs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """`obs` [P, B, D] scaled by each member's statistics (identity when disabled), written
        into `out` when given."""
        if not self.enabled:
            return obs if out is None else out.copy_(obs)
        return torch.mul(obs - self._shift, self._scale, out=out).clamp_(-CLIP, CLIP)

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Fold a batch `obs` [P, B, D] into each member's statistics."""
        if not self.enabled:
            return
        self.mean, self.var, self.count = merge_moments(self.mean, self.var, self.count, obs)
        self._refresh()

    def gather(self, idx: torch.Tensor) -> None:
        self.mean = self.mean.index_select(0, idx)
        self.var = self.var.index_select(0, idx)
        self.count = self.count.index_select(0, idx)
        self._refresh()

    def state(self) -> dict[str, torch.Tensor]:
        return {"obs_norm.mean": self.mean, "obs_norm.var": self.var, "obs_norm.count": self.count}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean = tensors["obs_norm.mean"].clone()
        self.var = tensors["obs_norm.var"].clone()
        self.count = tensors["obs_norm.count"].clone()
        self._refresh()


class RewardScaler:
    """Per-member reward scaling by the running standard deviation of discounted returns (as
    Gymnasium's NormalizeReward and SB3's VecNormalize do), so value targets stay near unit scale
    whatever the env's reward magnitude. Statistics are updated from training rollouts only and
    travel with the member; fitness always uses raw rewards."""

    def __init__(self, size: int, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled
        self.var = torch.ones(size, device=device)
        self.mean = torch.zeros(size, device=device)
        self.count = torch.zeros(size, device=device)

    def scale(self) -> torch.Tensor:
        """Factor [P] the rewards are multiplied by (1 when disabled)."""
        if not self.enabled:
            return torch.ones_like(self.var)
        return torch.rsqrt(self.var + EPS)

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        """Fold discounted returns seen in a rollout, [P, M], into each member's statistics."""
        if not self.enabled:
            return
        self.mean, self.var, self.count = merge_moments(self.mean, self.var, self.count, returns)

    def gather(self, idx: torch.Tensor) -> None:
        self.var, self.mean, self.count = (t.index_select(0, idx) for t in (self.var, self.mean, self.count))

    def state(self) -> dict[str, torch.Tensor]:
        return {"reward_scale.var": self.var, "reward_scale.mean": self.mean, "reward_scale.count": self.count}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "reward_scale.var" in tensors:
            self.var = tensors["reward_scale.var"].clone()
            self.mean = tensors["reward_scale.mean"].clone()
            self.count = tensors["reward_scale.count"].clone()
