"""evorl: populations of PPO agents tuned by evolution while they train.

Python use: `evorl_cli.load(path)` returns a trained agent with `act(obs, state=None)`.
"""

__version__ = "0.1.0"


def load(path, member=None, device="cpu"):
    """Load a trained member (default: the run's best) from a run directory or checkpoint file."""
    from evorl_cli.agent import load as _load

    return _load(path, member, device)

