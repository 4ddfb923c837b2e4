"""The genealogy of a population, from its records: who descends from whom, by which mutation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evorl_cli.evolve.mutate import MUTATIONS, NO_CHANGE, kind_of

# Mutation kinds as the lineage chart colours them: a member's start, an elite copy, no change, and
# every registered mutation kind (evolve/mutate.py), which the kind's note prefixes identify.
KINDS = ("init", "elite", NO_CHANGE, *(name for name in MUTATIONS if name != "no_mutation"))


def mutation_kind(note: str) -> str:
    """The kind of mutation a metrics.csv `mutation` note describes (one of `KINDS`)."""
    kind = kind_of(note)
    return kind if kind in KINDS else NO_CHANGE


@dataclass
class Lineage:
    """`parent[g, p]`: the slot at generation g - 1 that member p of generation g was copied from
    (-1 at generation 0); `kind[g][p]`: the mutation it then got."""

    generations: np.ndarray  # [G] generation numbers
    parent: np.ndarray  # [G, P]
    kind: list[list[str]]
    fitness: np.ndarray  # [G, P] selection fitness

    @classmethod
    def from_rows(cls, rows: list[dict]) -> "Lineage":
        gens = sorted({r["generation"] for r in rows})
        size = max(r["member"] for r in rows) + 1
        parent = np.full((len(gens), size), -1, dtype=np.int64)
        fitness = np.full((len(gens), size), np.nan)
        kind = [["none"] * size for _ in gens]
        index = {g: i for i, g in enumerate(gens)}
        for r in rows:
            i, p = index[r["generation"]], r["member"]
            parent[i, p] = r["parent"]
            fitness[i, p] = np.nan if r["fitness"] is None else r["fitness"]
            kind[i][p] = mutation_kind(r["mutation"])
        return cls(np.array(gens), parent, kind, fitness)

    def ancestry(self, index: int, member: int) -> list[tuple[int, int]]:
        """(generation index, slot) from generation index 0 down to `member` at `index`."""
        path = [(index, member)]
        while index > 0 and self.parent[index, member] >= 0:
            member = int(self.parent[index, member])
            index -= 1
            path.append((index, member))
        return path[::-1]
