"""Code that an edited checkpoint names. Each function leaves a marker file, the proof that it ran;
`touch_marker` also works as a wrapper (it returns the env), so a trusted checkpoint really runs."""

from __future__ import annotations

from pathlib import Path


def touch_marker(env=None, path: str = "", **_ignored):
    Path(path).touch()
    return env


def identity(x, path: str = ""):
    Path(path).touch()
    return x
