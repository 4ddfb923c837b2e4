"""Mutations applied to members after selection: parameter noise, architecture, activation and RL
hyperparameters. Each mutated member gets exactly one kind, drawn with the configured probabilities.

One registry of kinds: each is a function registered under its config name (`@mutation("rl_hp", notes=tuple(f"{name} " for name in HPARAMS))`),
and the relative weights are read from `mutation.<name>` (the weight fields of `MutationConfig`, in
their declared order, which is also the order a draw indexes). A new kind is one function here and
one weight field in the schema (`config.py`, `mutation_weight(...)`). Its notes (the table's and
metrics.csv's `mutation` column) start with one of the kind's `notes` prefixes (by default its
name), so the lineage chart knows which kind made each child.

Adam's state: an architecture mutation zeroes the moments of exactly the parameters it rewrites
(new units, a new or removed layer, grown recurrent state: their old statistics describe another
function) and every other moment carries on. Parameter noise keeps all moments: it moves each weight
by a small multiple (`mutation_sd`) of itself, so the gradient statistics still describe the
neighbourhood, and zeroing them while the step count carries on would make each weight's next steps
about 3x lr (0.1 g / sqrt(0.001 g^2)). Activation and RL-hyperparameter changes rewrite no
parameters and keep all of Adam's state too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from evorl_cli.config import ACTIVATIONS, MUTATION_WEIGHTS, HPRange, MutationConfig, NetConfig, TrainConfig
from evorl_cli.evolve import architecture as surgery
from evorl_cli.hparams import HPARAMS, RolloutCap
from evorl_cli.nets.policy import Capacity
from evorl_cli.population import Population


@dataclass(frozen=True)
class MutationKind:
    """One registered kind: `apply(mutator, pop, p)` mutates member p and returns a short note.
    `surgery`: it changes the architecture, so the layout gets room first and the Adam moments of
    every parameter it rewrites are zeroed (see the module docstring)."""

    name: str
    apply: Callable[["Mutator", Population, int], str]
    notes: tuple[str, ...]  # how this kind's notes begin (`mutation` defaults it to the name); "none..." is no change
    surgery: bool = False

    def wrote(self, note: str) -> bool:
        """Whether `note` is one this kind writes."""
        return note.startswith(self.notes)


MUTATIONS: dict[str, MutationKind] = {}
NO_CHANGE = "none"  # how a note begins when the drawn kind changed nothing


def mutation(name: str, surgery: bool = False, notes: tuple[str, ...] | None = None):
    """Register the decorated function as the mutation kind weighted by `mutation.<name>`; its notes
    begin with one of `notes` (default: the name itself)."""
    def register(fn: Callable[["Mutator", Population, int], str]):
        if name in MUTATIONS:
            raise ValueError(f"mutation kind {name} registered twice")
        MUTATIONS[name] = MutationKind(name, fn, tuple(notes or (name,)), surgery)
        return fn
    return register


def kind_of(note: str) -> str:
    """The registered kind that wrote a `mutation` note, "none" when the note says nothing changed,
    or the note's first word for a note no registered kind writes (e.g. "init", "elite")."""
    text = str(note or "").split(";")[0].strip()  # "; diverged ..." is appended by the training loop
    if not text or text.startswith(NO_CHANGE):
        return NO_CHANGE
    for kind in MUTATIONS.values():
        if kind.wrote(text):
            return kind.name
    return text.split()[0]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class Mutator:
    """Draws and applies mutations; all randomness comes from the run's generators."""

    def __init__(self, cfg: MutationConfig, net: NetConfig, hp_ranges: dict[str, HPRange], cap: RolloutCap,
                 rng: np.random.Generator, gen: torch.Generator) -> None:
        self.cfg, self.net, self.hp_ranges = cfg, net, hp_ranges
        self.cap = cap  # a batch holds at least one training unit and at most one member's rollout
        self.rng, self.gen = rng, gen
        self.kinds = [MUTATIONS[name] for name in MUTATION_WEIGHTS]  # the schema's order: what a draw indexes
        weights = np.array([getattr(cfg, kind.name) for kind in self.kinds], dtype=float)
        self.probs = weights / weights.sum()
        self._room_made = False

    @classmethod
    def for_run(cls, config: TrainConfig, rng: np.random.Generator, gen: torch.Generator) -> "Mutator":
        """The mutator of a run: its mutation settings, net limits, hp_config and rollout cap."""
        return cls(config.mutation, config.net, config.hp_config, RolloutCap.of(config), rng, gen)

    def mutate(self, pop: Population, protected: set[int]) -> list[str]:
        """Mutate every member not in `protected`; returns a short description per member."""
        notes = []
        self._room_made = False
        for p in range(pop.size):
            if p in protected:
                notes.append("elite")
                continue
            kind = self.kinds[self.rng.choice(len(self.kinds), p=self.probs)]
            notes.append(self._surgery(pop, p, kind) if kind.surgery else kind.apply(self, pop, p))
        pop.refresh_masks()  # the layout shrinks to what members now use: removals make the batch cheaper
        return notes

    def _make_room(self, pop: Population) -> None:
        """Give the layout room for any growth this generation's mutations can ask for, once per
        `mutate` (re-laying the whole population out is O(P), so not once per mutated member): each
        member mutates at most once, so no member outgrows the widest one by more than one step,
        nor the deepest one by more than a layer. `mutate` trims the layout again at its end."""
        if self._room_made:
            return
        self._room_made = True
        need, cap, step = pop.needed_capacity(), pop.net.cap, max(self.cfg.node_choices)
        room = Capacity(min(self.net.max_width, need.width + step),
                        min(self.net.max_layers, pop.arch.widths.shape[1], need.depth + 1),
                        min(self.net.max_hidden_size, need.hidden + step) if need.hidden else 0)
        pop.set_capacity(Capacity(max(room.width, cap.width), max(room.depth, cap.depth), max(room.hidden, cap.hidden)))

    def _surgery(self, pop: Population, p: int, kind: MutationKind) -> str:
        """Run an architecture-changing kind on member p and reset the moments it touched."""
        self._make_room(pop)
        with torch.no_grad():
            row = pop.params[p]
            before = row.clone()
            note = kind.apply(self, pop, p)
            pop.adam.reset_entries(p, row != before)
        return note

    def step_size(self) -> int:
        """Units one width mutation adds or removes: one of `node_choices`, drawn."""
        return int(self.cfg.node_choices[self.rng.integers(len(self.cfg.node_choices))])


@mutation("no_mutation", notes=(NO_CHANGE,))
def no_mutation(m: Mutator, pop: Population, p: int) -> str:
    return NO_CHANGE


@mutation("parameters", notes=("params",))
def parameters(m: Mutator, pop: Population, p: int) -> str:
    """Gaussian noise on the policy's weights, scaled by each weight's magnitude (zeros stay zero).

    Adam's moments are kept (see the module docstring)."""
    with torch.no_grad():
        row = pop.params[p]
        for start, end in pop.net.actor_slices():
            noise = torch.randn(end - start, generator=m.gen).to(row.device)
            row[start:end] += m.cfg.mutation_sd * row[start:end].abs() * noise
    return f"params sd={_fmt(m.cfg.mutation_sd)}"


@mutation("activation")
def activation(m: Mutator, pop: Population, p: int) -> str:
    """Switch member p to another of `mutation.activations` (no parameter changes)."""
    current = pop.arch.activation_name(p)
    options = [a for a in m.cfg.activations if a != current]
    if not options:
        return NO_CHANGE
    new = options[m.rng.integers(len(options))]
    pop.arch.activation[p] = ACTIVATIONS.index(new)
    return f"activation {current}->{new}"


@mutation("architecture", surgery=True, notes=("nodes", "layer", "hidden"))
def architecture(m: Mutator, pop: Population, p: int) -> str:
    """Add or (with probability `remove_prob`) remove: a layer (share `new_layer_prob`) or units
    of one layer. Adding keeps the member's function; removing changes it, and selection judges.
    A step changes a layer by at most a factor of two either way (`_wider`, `_narrower`)."""
    remove = m.rng.random() < m.cfg.remove_prob
    if pop.net.recurrent:
        return _recurrent_size(m, pop, p, remove)
    row, arch, net = pop.params[p], pop.arch, pop.net
    depth = int(arch.n_layers[p])
    if m.rng.random() < m.cfg.new_layer_prob:
        if remove and depth > 1:
            surgery.remove_layer(net, row, arch, p)
            return f"layer -1 ({depth - 1} layers)"
        if not remove and depth < m.net.max_layers:
            surgery.add_layer(net, row, arch, p, m.gen)
            return f"layer +1 ({depth + 1} layers)"
    layer = int(m.rng.integers(depth))
    step = m.step_size()
    old = int(arch.widths[p, layer])
    if remove:
        new = _narrower(old, step, m.net.min_width)
        if new == old:
            return "none (at min width)"
        surgery.shrink_units(net, row, arch, p, layer, new)
    else:
        new = _wider(old, step, m.net.max_width)
        if new == old:
            return "none (at max width)"
        surgery.grow_units(net, row, arch, p, layer, new, m.gen)
    return f"nodes L{layer} {old}->{new}"


def _wider(old: int, step: int, cap: int) -> int:
    """Width after adding `step` units to `old`: at most double, and at most `cap`.

    The mirror of `_narrower`, so that with removal as likely as growth a layer's size takes
    steps of at most a factor of two either way and does not drift upward (capped removals
    beside uncapped additions of up to 64 units grew Acrobot's mean hidden units from 128 to 272
    over a long run)."""
    return min(old + step, 2 * old, cap)


def _narrower(old: int, step: int, floor: int) -> int:
    """Width after removing `step` units from `old`, keeping at least half of them and `floor`.

    Removed units take what they learnt with them; a step as large as the layer (64 of 64 units
    with the default node choices) left 8 units and a member that had to relearn its task. On
    LunarLander such members won noisy selections and the population shrank to 40x8 units, far
    below the 64x64 that learns it."""
    return max(old - step, (old + 1) // 2, floor)


def _recurrent_size(m: Mutator, pop: Population, p: int, remove: bool) -> str:
    """Recurrent members grow their hidden state (gate-aware, outputs unchanged) or, with
    `remove_prob`, shrink it (down to `net.min_width` units: the one floor on a layer's width, which
    the recurrent state shares with the MLP's layers), so its size follows the task both ways;
    their MLP stays, since a new layer or removed units would break the function the state
    dynamics feed."""
    old = int(pop.arch.hidden[p])
    if remove:
        new = _narrower(old, m.step_size(), min(m.net.min_width, old))
        if new == old:
            return "none (at min hidden size)"
        surgery.shrink_hidden(pop.net, pop.params[p], pop.arch, p, new)
        return f"hidden {old}->{new}"
    new = _wider(old, m.step_size(), m.net.max_hidden_size)
    if new == old:
        return "none (at max hidden size)"
    surgery.grow_hidden(pop.net, pop.params[p], pop.arch, p, new, m.gen)
    return f"hidden {old}->{new}"


@mutation("rl_hp", notes=tuple(f"{name} " for name in HPARAMS))
def rl_hp(m: Mutator, pop: Population, p: int) -> str:
    """Grow or shrink one of the member's hp_config hyperparameters by the table's rule
    (`HyperParameter.mutate`); only those a step can move are drawn from."""
    names = [n for n in sorted(m.hp_ranges) if HPARAMS[n].can_move(pop.hp[n][p], m.hp_ranges[n], m.cap)]
    if not names:
        return NO_CHANGE
    name = names[m.rng.integers(len(names))]
    grow = m.rng.random() < 0.5
    old = pop.hp[name][p]
    pop.hp[name][p] = HPARAMS[name].mutate(old, grow, m.hp_ranges[name], m.cap)
    return f"{name} {_fmt(old)}->{_fmt(pop.hp[name][p])}"


_unregistered = set(MUTATION_WEIGHTS) ^ set(MUTATIONS)
assert not _unregistered, f"mutation weights without a registered kind, or kinds without a weight: {_unregistered}"
