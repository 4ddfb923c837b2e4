"""MuJoCo's C-level warnings, minus the one Gymnasium's own model files cause.

MuJoCo 4 warns, on stderr and once per compiled model, that the `settotalmass` compiler attribute
is deprecated. Gymnasium's HalfCheetah XML uses it, so a population run printed the same four-line
notice for every member's env and every evaluation env: noise the user can do nothing about. Every
other MuJoCo warning still reaches stderr as MuJoCo prints it.
"""

from __future__ import annotations

import sys

# Deprecations in the model files Gymnasium ships: not the user's to fix.
GYMNASIUM_MODEL_DEPRECATIONS = ("compiler attribute 'settotalmass' is deprecated",)


def _print_warning(message: str) -> None:
    if any(known in message for known in GYMNASIUM_MODEL_DEPRECATIONS):
        return
    print(f"WARNING: {message}", file=sys.stderr)


def quiet_gymnasium_model_deprecations() -> None:
    """Route MuJoCo's warnings through a handler that drops Gymnasium's model deprecations.

    Leaves a handler someone else installed alone. Safe to call more than once, and in each
    process of an async vector env (each has its own MuJoCo)."""
    try:
        import mujoco
    except ImportError:  # the env's own import names the missing extra
        return
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_print_warning)
