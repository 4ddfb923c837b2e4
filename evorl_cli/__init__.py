"""evorl: populations of PPO agents tuned by evolution while they train.

Python use: `evorl_cli.load(path)` returns a trained agent with `act(obs, state=None)`.
"""

__version__ = "0.1.0"


def load(path, member=None, device="cpu", trust=False):
    """Load a trained member (default: the run's best) from a run directory or checkpoint file.

    `trust=True` lets a checkpoint whose env uses wrappers other than Gymnasium's (or a
    `module:Env` id) import and run that code; without it such a checkpoint is refused."""
    from evorl_cli.agent import load as _load

    return _load(path, member, device, trust)

