"""`evorl render`: play episodes with a trained member and write them as an animated GIF."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from omegaconf import DictConfig
from rich.console import Console

from evorl_cli.agent import load_member
from evorl_cli.config import GivenEnv, to_dataclass
from evorl_cli.envs.batch import EnvBatch
from evorl_cli.errors import EvorlError

# Rendering is offscreen: keep SDL (pygame) from looking for a display or sound card.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
# MuJoCo's default (GLFW) needs a display; on a headless Linux machine it renders with EGL instead.
if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("MUJOCO_GL", "egl")


def record_episodes(loaded, episodes: int, seed: int, deterministic: bool = True,
                    max_steps: int | None = None) -> tuple[list[np.ndarray], list[float]]:
    """Frames of `episodes` episodes (the first and the final state included) and each return."""
    env = EnvBatch(loaded.config.env, 1, render_mode="rgb_array", purpose="render")
    pop = loaded.population
    gen = torch.Generator(device=pop.device)
    gen.manual_seed(seed)
    frames, returns = [], []
    try:
        for episode in range(episodes):
            obs = env.reset(seed + episode)
            try:
                frame = env.render()
            except Exception as exc:  # no OpenGL context, a renderer's missing library: say which knob
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise EvorlError(f"{loaded.config.env.id} could not render ({first}); MuJoCo envs choose their "
                                 "OpenGL backend with MUJOCO_GL=egl, osmesa or glfw (glfw needs a display)") from None
            if frame is None or np.asarray(frame).ndim != 3:
                raise EvorlError(f"{loaded.config.env.id} cannot render rgb_array frames; render needs an env "
                                 "with render_mode='rgb_array' (classic-control needs pygame)")
            frames.append(np.asarray(frame))
            total, steps, done = 0.0, 0, False
            state = pop.initial_state(1)
            while not done and (max_steps is None or steps < max_steps):
                step = pop.act(torch.as_tensor(obs, device=pop.device).unsqueeze(0), gen, deterministic, state)
                state = step.state
                tr = env.step(step.action[0].cpu().numpy())
                total += float(tr.reward[0])
                done = bool(tr.terminated[0] or tr.truncated[0])
                obs = tr.obs
                frames.append(np.asarray(env.render()))
                steps += 1
            returns.append(total)
    finally:
        env.close()
    return frames, returns


def write_gif(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Write atomically, so an interrupted render never leaves half a GIF."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimsave(tmp, frames, format="GIF", duration=1000.0 / fps, loop=0)
        os.replace(tmp, path)
    except OSError as exc:
        raise EvorlError(f"could not write {path}: {exc.strerror or exc}: set out to a writable path, "
                         "e.g. out=member.gif") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def run_render(cfg: DictConfig, console: Console) -> Path:
    if cfg.fps <= 0 or cfg.episodes < 1:
        raise EvorlError("fps and episodes must be positive (e.g. fps=30 episodes=1)")
    loaded = load_member(cfg.ckpt, cfg.member, cfg.device, cfg.trust_checkpoint,
                         given=to_dataclass(GivenEnv, cfg.env))
    deterministic = loaded.deterministic if cfg.deterministic is None else bool(cfg.deterministic)
    frames, returns = record_episodes(loaded, cfg.episodes, cfg.seed, deterministic, cfg.max_steps)
    actions = "deterministic" if deterministic else "sampled"
    for i, ret in enumerate(returns):
        console.print(f"episode {i}: return {ret:.2f} ({actions} actions)")
    if cfg.out:
        out = Path(cfg.out)
    else:
        ckpt_file = loaded.checkpoint.path
        run_dir = ckpt_file.parent.parent if ckpt_file.parent.name == "checkpoints" else ckpt_file.parent
        out = run_dir / f"{loaded.config.env.name}_member{loaded.member}.gif"
    write_gif(out, frames, cfg.fps)
    console.print(f"wrote {len(frames)} frames to {out}")
    return out
