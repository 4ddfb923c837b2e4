"""Checkpoints as pure data: one safetensors file holding the tensors and a JSON document.

Loading parses tensors and JSON only, so a checkpoint can never run code. Files are written to a
temporary name and renamed into place, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from evorl_cli.config import TrainConfig, build_train_config
from evorl_cli.errors import EvorlError
from evorl_cli.nets.arch import Architecture
from evorl_cli.nets.policy import ActionSpec, Capacity, PolicyNet
from evorl_cli.normalize import ObsNormalizer, RewardScaler
from evorl_cli.optim import BatchedAdam
from evorl_cli.population import Population

FORMAT_VERSION = 1
SUFFIX = ".safetensors"
META_KEY = "evorl"


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def config(self) -> TrainConfig:
        return build_train_config(self.meta["config"])


def population_payload(pop: Population, members: list[int] | None = None) -> tuple[dict, dict]:
    """Tensors and JSON-ready description of `pop` (or of the listed members only)."""
    idx = list(range(pop.size)) if members is None else members
    index = torch.as_tensor(idx, dtype=torch.long, device=pop.device)
    tensors = {"params": pop.params.detach(), **pop.adam.state(), **pop.obs_norm.state(), **pop.reward_scale.state()}
    tensors = {k: v.index_select(0, index).cpu().contiguous() for k, v in tensors.items()}
    action = pop.net.action
    meta = {
        "obs_dim": pop.net.obs_dim,
        "capacity": asdict(pop.net.cap),
        "image": None if pop.net.image is None else list(pop.net.image),
        "action": {"discrete": action.discrete, "n": action.n,
                   "low": None if action.low is None else action.low.tolist(),
                   "high": None if action.high is None else action.high.tolist(),
                   "nvec": None if action.nvec is None else list(action.nvec)},
        "members": [{"hidden_sizes": pop.arch.hidden_sizes(p), "activation": pop.arch.activation_name(p),
                     "widths": pop.arch.widths[p].tolist(), "activation_index": int(pop.arch.activation[p]),
                     "recurrent_hidden": int(pop.arch.hidden[p]),
                     "hyperparameters": pop.hyperparameters(p)} for p in idx],
    }
    return tensors, meta


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write atomically: temp file in the same directory, fsync, rename.

    Whatever stops the write (disk full, permissions, an I/O error, Ctrl-C) leaves the file at
    `path` as it was and no temp file behind; a failed write raises a one-line EvorlError naming the
    path and the cause."""
    document = json.dumps({"format_version": FORMAT_VERSION, **meta})
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    existed = path.is_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata={META_KEY: document})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        kept = f"the previous {path.name} is intact" if existed else "nothing was written"
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        then = (f"resume with: evorl train resume={run}" if (path.parent / f"latest{SUFFIX}").is_file()
                else "start the run again")
        raise EvorlError(f"could not write checkpoint {path}: {_write_failure(exc)}; {kept}: free disk space "
                         f"(or fix permissions), then {then}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _write_failure(exc: BaseException) -> str:
    """The cause of a failed write in a few words, e.g. 'No space left on device (os error 28)'."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (os error {exc.errno})" if exc.errno else exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.rpartition("I/O error: ")[2]  # safetensors: "Error while serializing: I/O error: <cause>"


def resolve(path: str | Path, prefer: str = "best") -> Path:
    """A checkpoint file from a file path, a run directory or its checkpoints/ folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise EvorlError(f"ckpt={path}: no such file or directory; pass a run directory under outputs/ "
                         "or a .safetensors checkpoint")
    if p.is_file():
        return p
    for folder in (p / "checkpoints", p):
        for name in (prefer, "latest", "best"):
            candidate = folder / f"{name}{SUFFIX}"
            if candidate.is_file():
                return candidate
    raise EvorlError(f"ckpt={path}: no checkpoint in this directory (expected checkpoints/latest{SUFFIX}); "
                     "was the run stopped before its first generation ended?")


def load(path: str | Path, prefer: str = "best") -> Checkpoint:
    """Read a checkpoint: tensors and JSON only, never code. Raises EvorlError on anything off."""
    file = resolve(path, prefer)
    try:
        with safe_open(str(file), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception:
        raise EvorlError(f"{file}: not a readable evorl checkpoint (corrupt, truncated or another format); "
                         "use a file written by `evorl train`") from None
    if META_KEY not in header:
        raise EvorlError(f"{file}: a safetensors file but not an evorl checkpoint (no '{META_KEY}' metadata)")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError:
        raise EvorlError(f"{file}: checkpoint metadata is corrupt; use another checkpoint") from None
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise EvorlError(f"{file}: checkpoint format {version} is newer than this evorl understands "
                         f"({FORMAT_VERSION}); upgrade evorl-cli")
    return Checkpoint(file, meta, tensors)


def member_architecture(members: list[dict]) -> Architecture:
    """The members' architecture as a checkpoint's metadata records it."""
    return Architecture(np.array([m["widths"] for m in members], dtype=np.int64),
                        np.array([m["activation_index"] for m in members], dtype=np.int64),
                        np.array([m.get("recurrent_hidden", 0) for m in members], dtype=np.int64))


def restore_population(ckpt: Checkpoint, config: TrainConfig, device: torch.device) -> Population:
    """Rebuild the population a checkpoint holds, on `device`."""
    meta = ckpt.meta
    act = meta["action"]
    action = ActionSpec(act["discrete"], act["n"],
                        None if act["low"] is None else np.asarray(act["low"], dtype=np.float32),
                        None if act["high"] is None else np.asarray(act["high"], dtype=np.float32),
                        None if act.get("nvec") is None else tuple(act["nvec"]))
    image = meta.get("image")
    net = PolicyNet(meta["obs_dim"], action, config.net, Capacity(**meta["capacity"]),
                    None if image is None else tuple(image))
    members = meta["members"]
    arch = member_architecture(members)
    hp = {name: np.array([m["hyperparameters"][name] for m in members],
                         dtype=np.int64 if isinstance(members[0]["hyperparameters"][name], int) else np.float64)
          for name in members[0]["hyperparameters"]}
    params = ckpt.tensors["params"]
    if params.shape != (len(members), net.num_params):
        raise EvorlError(f"{ckpt.path}: parameters do not match the network described in the checkpoint")
    tensors = {k: v.to(device) for k, v in ckpt.tensors.items()}
    adam = BatchedAdam(len(members), net.num_params, device)
    adam.load_state(tensors)
    norm = ObsNormalizer(len(members), meta["obs_dim"], device, config.algo.normalize_obs)
    norm.load_state(tensors)
    scale = RewardScaler(len(members), device, config.algo.normalize_rewards)
    scale.load_state(tensors)
    return Population(net, arch, hp, tensors["params"].clone(), adam, norm, scale)
