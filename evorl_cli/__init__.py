"""evorl: populations of PPO agents tuned by evolution while they train.

Python use: `evorl_cli.load(path)` returns a trained agent with `act(obs, state=None)`;
`evorl_cli.read_run(path)` returns a run's per-generation records.
"""

__version__ = "0.1.0"


def load(path, member=None, device="cpu", trust=False):
    """Load a trained member (default: the run's best) from a run directory or checkpoint file.

    `trust=True` lets a checkpoint whose env uses wrappers other than Gymnasium's (or a
    `module:Env` id) import and run that code; without it such a checkpoint is refused."""
    from evorl_cli.agent import load as _load

    return _load(path, member, device, trust)



def read_run(path):
    """A run's records (its metrics.csv: one row per member per generation) as a pandas DataFrame
    if pandas is installed, else a list of dicts. Works on running and interrupted runs too."""
    from evorl_cli.records.read import read_run as _read_run

    return _read_run(path)
