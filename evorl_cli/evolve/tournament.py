"""Tournament selection with elitism, as an index vector over the population."""

from __future__ import annotations

import numpy as np


def tournament_select(fitness: np.ndarray, tournament_size: int, elitism: bool,
                      rng: np.random.Generator, size: np.ndarray | None = None) -> np.ndarray:
    """Parent index of each slot of the next generation.

    With elitism slot 0 is the best member, kept unchanged. Every other slot holds the winner of a
    tournament among `tournament_size` distinct members drawn at random. NaN fitness (a member that
    never finished an episode) loses every comparison.

    Ties in fitness go to the smaller network when `size` [P] (e.g. `Architecture.num_weights`) is
    given, then to the lowest index (elite) or the first drawn (tournament). This is the pressure
    toward small networks: it never overrides a difference in fitness, so it costs no score, but
    where fitness is flat (every early Acrobot policy scores -500; growth that keeps the function
    scores as its parent) it stops function-preserving growth from drifting size upward.
    """
    count = len(fitness)
    score = np.where(np.isnan(fitness), -np.inf, fitness)
    tie = np.zeros(count) if size is None else np.asarray(size, dtype=np.float64)
    parents = np.empty(count, dtype=np.int64)
    start = 0
    if elitism:
        parents[0] = int(np.lexsort((tie, -score))[0])  # stable: equal size goes to the lowest index
        start = 1
    for slot in range(start, count):
        entrants = rng.choice(count, size=tournament_size, replace=False)
        parents[slot] = entrants[np.lexsort((tie[entrants], -score[entrants]))[0]]
    return parents
