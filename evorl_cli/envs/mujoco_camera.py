"""A MuJoCo env's rendered frames follow the body its camera config names.

Gymnasium's Hopper and Walker ask their default camera to track the torso (`trackbodyid`), but
Gymnasium 1.x renders through a free camera, which MuJoCo never moves (Gymnasium issue #1141), and
HalfCheetah's camera config names no body at all: a trained Hopper hopped out of the picture within
five seconds, the cheetah within one, and the rest of the GIF showed an empty floor. This wrapper
switches that camera to MuJoCo's tracking mode (which keeps the configured distance, elevation and
azimuth) around the body the config names, or, where it names none, around the robot's root body
when that body can travel (a free joint or an unlimited slide: the locomotion robots). Envs whose
camera watches the world (trackbodyid 0) or a robot fixed in place render as Gymnasium has them.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class FollowTrackedBody(gym.Wrapper):
    """Renders with MuJoCo's tracking camera around `body_to_follow`, where there is one."""

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
        if camera is None or renderer.camera_id != -1:
            return False  # a named or fixed camera: as Gymnasium renders it
        body = body_to_follow(self.env.unwrapped.model, camera.trackbodyid)
        if body is None:
            return False
        camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        camera.trackbodyid = body
        renderer.camera_id = None  # or each render would set the camera back to free
        return True


def body_to_follow(model: Any, configured: int) -> int | None:
    """The body a rendered frame should follow: the one the camera config names (above the world,
    body 0); with none named, the root body (1) if it can travel; else None."""
    import mujoco

    if configured > 0:
        return configured
    if configured == 0 or model.nbody < 2:
        return None
    first, count = model.body_jntadr[1], model.body_jntnum[1]
    for joint in range(first, first + count):
        kind = model.jnt_type[joint]
        if kind == mujoco.mjtJoint.mjJNT_FREE or (kind == mujoco.mjtJoint.mjJNT_SLIDE and not model.jnt_limited[joint]):
            return 1
    return None
