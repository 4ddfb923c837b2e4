"""Mutations applied to members after selection: parameter noise, architecture, activation and RL
hyperparameters. Each mutated member gets exactly one kind, drawn with the configured probabilities.

Adam's state: an architecture mutation zeroes the moments of exactly the parameters it rewrites
(new units, a new or removed layer, grown recurrent state: their old statistics describe another
function) and every other moment carries on. Parameter noise keeps all moments: it moves each weight
by a small multiple (`mutation_sd`) of itself, so the gradient statistics still describe the
neighbourhood, and zeroing them while the step count carries on would make each weight's next steps
about 3x lr (0.1 g / sqrt(0.001 g^2)). Activation and RL-hyperparameter changes rewrite no
parameters and keep all of Adam's state too.
"""

from __future__ import annotations

import numpy as np
import torch

from evorl_cli.config import ACTIVATIONS, MUTATION_WEIGHTS, HPRange, MutationConfig, NetConfig, TrainConfig
from evorl_cli.hparams import HPARAMS, RolloutCap
from evorl_cli.nets.policy import Capacity
from evorl_cli.population import Population

KINDS = ("none", "parameters", "architecture", "activation", "rl_hp")


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class Mutator:
    """Draws and applies mutations; all randomness comes from the run's generators."""

    def __init__(self, cfg: MutationConfig, net: NetConfig, hp_ranges: dict[str, HPRange], cap: RolloutCap,
                 rng: np.random.Generator, gen: torch.Generator) -> None:
        self.cfg, self.net, self.hp_ranges = cfg, net, hp_ranges
        self.cap = cap  # a batch holds at least one training unit and at most one member's rollout
        self.rng, self.gen = rng, gen
        weights = np.array([getattr(cfg, key) for key in MUTATION_WEIGHTS], dtype=float)  # in KINDS' order
        self.probs = weights / weights.sum()

    @classmethod
    def for_run(cls, config: TrainConfig, rng: np.random.Generator, gen: torch.Generator) -> "Mutator":
        """The mutator of a run: its mutation settings, net limits, hp_config and rollout cap."""
        return cls(config.mutation, config.net, config.hp_config, RolloutCap.of(config), rng, gen)

    def mutate(self, pop: Population, protected: set[int]) -> list[str]:
        """Mutate every member not in `protected`; returns a short description per member."""
        notes = []
        for p in range(pop.size):
            if p in protected:
                notes.append("elite")
                continue
            kind = KINDS[self.rng.choice(len(KINDS), p=self.probs)]
            if kind == "none":
                notes.append("none")
            elif kind == "parameters":
                notes.append(self.parameters(pop, p))
            elif kind == "rl_hp":
                notes.append(self.rl_hp(pop, p))
            elif kind == "architecture":
                self._make_room(pop)
                notes.append(self._rewrite(pop, p, self.architecture))
            else:
                notes.append(self._rewrite(pop, p, self.activation))
        pop.refresh_masks()
        return notes

    def _make_room(self, pop: Population) -> None:
        """Give the layout room for any growth one mutation can ask for (trimmed again afterwards)."""
        need, cap, step = pop.needed_capacity(), pop.net.cap, max(self.cfg.node_choices)
        room = Capacity(min(self.net.max_width, need.width + step),
                        min(self.net.max_layers, pop.arch.widths.shape[1], need.depth + 1),
                        min(self.net.max_hidden_size, need.hidden + step) if need.hidden else 0)
        pop.set_capacity(Capacity(max(room.width, cap.width), max(room.depth, cap.depth), max(room.hidden, cap.hidden)))

    def _rewrite(self, pop: Population, p: int, surgery) -> str:
        """Run an architecture-changing `surgery` on member p and reset the moments it touched."""
        with torch.no_grad():
            row = pop.params[p]
            before = row.clone()
            note = surgery(pop, p, row)
            pop.adam.reset_entries(p, row != before)
        return note

    def parameters(self, pop: Population, p: int) -> str:
        """Gaussian noise on the policy's weights, scaled by each weight's magnitude (zeros stay zero).

        Adam's moments are kept (see the module docstring)."""
        with torch.no_grad():
            row = pop.params[p]
            for start, end in pop.net.actor_slices():
                noise = torch.randn(end - start, generator=self.gen).to(row.device)
                row[start:end] += self.cfg.mutation_sd * row[start:end].abs() * noise
        return f"params sd={_fmt(self.cfg.mutation_sd)}"

    def activation(self, pop: Population, p: int, row: torch.Tensor) -> str:
        current = pop.arch.activation_name(p)
        options = [a for a in self.cfg.activations if a != current]
        if not options:
            return "none"
        new = options[self.rng.integers(len(options))]
        pop.arch.activation[p] = ACTIVATIONS.index(new)
        return f"activation {current}->{new}"

    def architecture(self, pop: Population, p: int, row: torch.Tensor) -> str:
        if pop.net.recurrent:
            return self.recurrent_growth(pop, p, row)
        remove = self.rng.random() < self.cfg.remove_prob
        depth = int(pop.arch.n_layers[p])
        if self.rng.random() < self.cfg.new_layer_prob:
            if remove and depth > 1:
                pop.net.remove_layer(row, pop.arch, p)
                pop.arch.widths[p, depth - 1] = 0
                return f"layer -1 ({depth - 1} layers)"
            if not remove and depth < self.net.max_layers:
                width = pop.net.add_layer(row, pop.arch, p, self.gen)
                pop.arch.widths[p, depth] = width
                return f"layer +1 ({depth + 1} layers)"
        layer = int(self.rng.integers(depth))
        step = int(self.cfg.node_choices[self.rng.integers(len(self.cfg.node_choices))])
        old = int(pop.arch.widths[p, layer])
        if remove:
            new = max(old - step, self.net.min_width)
            if new == old:
                return "none (at min width)"
            pop.net.shrink_units(row, pop.arch, p, layer, new)
        else:
            new = min(old + step, self.net.max_width)
            if new == old:
                return "none (at max width)"
            pop.net.grow_units(row, pop.arch, p, layer, new, self.gen)
        pop.arch.widths[p, layer] = new
        return f"nodes L{layer} {old}->{new}"

    def recurrent_growth(self, pop: Population, p: int, row: torch.Tensor) -> str:
        """Recurrent members grow their hidden state (gate-aware, outputs unchanged); their MLP stays,
        since a new layer or removed units would break the function the state dynamics feed."""
        old = int(pop.arch.hidden[p])
        step = int(self.cfg.node_choices[self.rng.integers(len(self.cfg.node_choices))])
        new = min(old + step, self.net.max_hidden_size)
        if new == old:
            return "none (at max hidden size)"
        pop.net.grow_hidden(row, pop.arch, p, new, self.gen)
        pop.arch.hidden[p] = new
        return f"hidden {old}->{new}"

    def rl_hp(self, pop: Population, p: int) -> str:
        """Grow or shrink one of the member's hp_config hyperparameters by the table's rule
        (`HyperParameter.mutate`); only those a step can move are drawn from."""
        names = [n for n in sorted(self.hp_ranges) if HPARAMS[n].can_move(pop.hp[n][p], self.hp_ranges[n], self.cap)]
        if not names:
            return "none"
        name = names[self.rng.integers(len(names))]
        grow = self.rng.random() < 0.5
        old = pop.hp[name][p]
        pop.hp[name][p] = HPARAMS[name].mutate(old, grow, self.hp_ranges[name], self.cap)
        return f"{name} {_fmt(old)}->{_fmt(pop.hp[name][p])}"
