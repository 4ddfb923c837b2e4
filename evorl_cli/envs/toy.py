"""Small tasks of our own, registered with Gymnasium under the `evorl/` namespace."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class PixelQuadrantEnv(gym.Env):
    """An image task that needs vision: a lit pixel appears somewhere on a dark `size` x `size`
    grid (uint8, [H, W, 1] channels-last); the action names its quadrant (0 top-left, 1 top-right,
    2 bottom-left, 3 bottom-right). Reward 1 when right. Each episode shows `length` images, so the
    best return is `length` and guessing earns a quarter of it."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, size: int = 10, length: int = 16, render_mode: str | None = None) -> None:
        self.size, self.length, self.render_mode = size, length, render_mode
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 1), np.uint8)
        self.action_space = gym.spaces.Discrete(4)
        self._pos = (0, 0)
        self._t = 0

    def _image(self) -> np.ndarray:
        image = np.zeros((self.size, self.size, 1), np.uint8)
        image[self._pos] = 255
        return image

    def _draw(self) -> None:
        self._pos = tuple(int(v) for v in self.np_random.integers(0, self.size, size=2))

    def _quadrant(self) -> int:
        half = self.size // 2
        return 2 * int(self._pos[0] >= half) + int(self._pos[1] >= half)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._draw()
        return self._image(), {}

    def step(self, action):
        reward = float(int(action) == self._quadrant())
        self._t += 1
        self._draw()
        return self._image(), reward, False, self._t >= self.length, {}

    def render(self) -> np.ndarray:
        return np.repeat(np.repeat(np.repeat(self._image(), 3, axis=2), 16, axis=0), 16, axis=1)


def register() -> None:
    if "evorl/PixelQuadrant-v0" not in gym.registry:
        gym.register(id="evorl/PixelQuadrant-v0", entry_point=PixelQuadrantEnv)
