"""Tournament selection with elitism, as an index vector over the population."""

from __future__ import annotations

import numpy as np


def tournament_select(fitness: np.ndarray, tournament_size: int, elitism: bool,
                      rng: np.random.Generator) -> np.ndarray:
    """Parent index of each slot of the next generation.

    With elitism slot 0 is the best member (ties go to the lowest index), kept unchanged. Every other
    slot holds the winner of a tournament among `tournament_size` distinct members drawn at random.
    NaN fitness (a member that never finished an episode) loses every comparison.
    """
    size = len(fitness)
    score = np.where(np.isnan(fitness), -np.inf, fitness)
    parents = np.empty(size, dtype=np.int64)
    start = 0
    if elitism:
        parents[0] = int(np.argmax(score))
        start = 1
    for slot in range(start, size):
        entrants = rng.choice(size, size=tournament_size, replace=False)
        parents[slot] = entrants[np.argmax(score[entrants])]
    return parents
