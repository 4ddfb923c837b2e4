"""A MuJoCo env's rendered frames follow the body its camera config names.

Gymnasium's MuJoCo envs ask their default camera to track a body (`trackbodyid`: the Hopper's
torso, the cheetah's), but Gymnasium 1.x renders through a free camera, which MuJoCo never moves
(Gymnasium issue #1141): a trained Hopper hops out of the picture within five seconds, and the rest
of the GIF shows an empty floor. This wrapper switches that camera to MuJoCo's tracking mode, which
keeps the configured distance, elevation and azimuth around the tracked body.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class FollowTrackedBody(gym.Wrapper):
    """Renders with MuJoCo's tracking camera where the env's camera config names a body to track."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._settled = False  # the camera is tracking, or there was nothing to track

    def render(self) -> Any:
        frame = self.env.render()
        if not self._settled:
            self._settled = True
            if self._track():
                frame = self.env.render()  # the first frame, from the tracking camera too
        return frame

    def _track(self) -> bool:
        import mujoco

        renderer = getattr(self.env.unwrapped, "mujoco_renderer", None)
        viewer = getattr(renderer, "viewer", None)  # made by the first render
        camera = getattr(viewer, "cam", None)
        if camera is None or renderer.camera_id != -1 or camera.trackbodyid < 0:
            return False  # a named or fixed camera, or no body to follow: as Gymnasium renders it
        camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        renderer.camera_id = None  # or each render would set the camera back to free
        return True
