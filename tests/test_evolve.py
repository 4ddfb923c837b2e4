"""Selection and mutation: seeded, elitist, within bounds, and never throwing optimiser state away."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import DISCRETE, NarrowNet, varied_population

from evorl_cli.config import HPRange, MutationConfig, NetConfig
from evorl_cli.evolve.mutate import MUTATIONS, Mutator
from evorl_cli.evolve.tournament import tournament_select
from evorl_cli.hparams import HPARAMS, MUTABLE_HPS, ZERO_STEP, RolloutCap
from evorl_cli.nets.policy import Capacity
from evorl_cli.optim import BatchedAdam
from evorl_cli.records.lineage import mutation_kind


def test_tournament_is_elitist_and_seeded():
    fitness = np.array([-300.0, -120.0, np.nan, -200.0, -90.0, -400.0])
    a = tournament_select(fitness, 3, True, np.random.default_rng(5))
    b = tournament_select(fitness, 3, True, np.random.default_rng(5))
    c = tournament_select(fitness, 3, True, np.random.default_rng(6))
    assert a[0] == 4  # the elite keeps slot 0
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 2 not in a  # a member without a finished episode never wins a tournament of 3
    # A tournament of the whole population always picks the best.
    assert (tournament_select(fitness, 6, False, np.random.default_rng(0)) == 4).all()


def _mutator(pop, **mutation):
    probs = {"no_mutation": 0.0, "parameters": 0.0, "architecture": 0.0, "activation": 0.0, "rl_hp": 0.0}
    probs.update(mutation)
    cfg = MutationConfig(**probs)
    hp = {"lr": HPRange(1e-4, 2e-3, 1.5, 0.5), "batch_size": HPRange(8, 64, 2.0, 0.5)}
    return Mutator(cfg, NetConfig(max_width=96, max_layers=3), hp, RolloutCap(1, 32), np.random.default_rng(0),
                   torch.Generator().manual_seed(0))


def _adam_with_history(pop):
    adam = BatchedAdam(pop.size, pop.net.num_params, torch.device("cpu"))
    g = torch.randn(pop.size, pop.net.num_params, generator=torch.Generator().manual_seed(1))
    adam.step(pop.params.detach().clone(), g * (pop.params.detach() != 0), torch.full((pop.size,), 1e-3),
              torch.ones(pop.size))
    pop.adam = adam
    return adam.exp_avg.clone(), adam.exp_avg_sq.clone()


def test_hyperparameter_mutation_keeps_adam_state_and_bounds():
    pop = varied_population(DISCRETE)
    m, v = _adam_with_history(pop)
    mutator = _mutator(pop, rl_hp=1.0)
    elite = {k: v[0] for k, v in pop.hp.items()}
    start = {k: v.copy() for k, v in pop.hp.items()}
    for _ in range(30):
        notes = mutator.mutate(pop, protected={0})
        assert notes[0] == "elite"
        assert ((pop.hp["lr"] >= 1e-4) & (pop.hp["lr"] <= 2e-3)).all()
        assert ((pop.hp["batch_size"] >= 8) & (pop.hp["batch_size"] <= 32)).all()  # capped at the rollout
    assert all(pop.hp[k][0] == v for k, v in elite.items())
    assert any((pop.hp[k][1:] != start[k][1:]).any() for k in ("lr", "batch_size"))
    assert torch.equal(pop.adam.exp_avg, m) and torch.equal(pop.adam.exp_avg_sq, v)


def test_architecture_mutation_keeps_function_and_resets_only_new_moments():
    pop = varied_population(DISCRETE)
    pop.hp["lr"][:] = 1e-3
    _adam_with_history(pop)
    pop.set_capacity(Capacity(96, 3))  # compare parameters in one layout: the mutator's max room
    obs = torch.randn(pop.size, 6, pop.net.obs_dim)
    with torch.no_grad():
        before_head, _, _ = pop.forward_normalized(obs)
    params_before = pop.params.detach().clone()
    m_before = pop.adam.exp_avg.clone()
    mutator = _mutator(pop, architecture=1.0)
    mutator.cfg.new_layer_prob = mutator.cfg.remove_prob = 0.0  # node growth only: must preserve the function
    notes = mutator.mutate(pop, protected=set())
    assert all(n.startswith("nodes") for n in notes), notes
    with torch.no_grad():
        after_head, _, _ = pop.forward_normalized(obs)
    assert torch.allclose(before_head, after_head, atol=1e-6)
    assert pop.net.cap.width == int(pop.arch.widths.max())  # trimmed back to what members use
    pop.set_capacity(Capacity(96, 3))
    changed = pop.params.detach() != params_before
    assert changed.any()
    assert (pop.adam.exp_avg[changed] == 0).all()
    assert torch.equal(pop.adam.exp_avg[~changed], m_before[~changed])


def test_activation_and_parameter_mutations():
    pop = varied_population(DISCRETE)
    acts_before = pop.arch.activation.copy()
    _mutator(pop, activation=1.0).mutate(pop, protected=set())
    assert (pop.arch.activation != acts_before).all()

    before = pop.params.detach().clone()
    _mutator(pop, parameters=1.0).mutate(pop, protected={0})
    after = pop.params.detach()
    assert torch.equal(after[0], before[0])
    assert not torch.equal(after[1], before[1])
    assert torch.equal(after[1] == 0, before[1] == 0)  # unused (zero) weights stay zero
    critic = [s for n, s in pop.net.layout.slots.items() if n.startswith(("critic", "v."))]
    for slot in critic:  # the value function is left alone
        assert torch.equal(after[1, slot.start:slot.end], before[1, slot.start:slot.end])


def test_parameter_noise_keeps_adam_moments():
    """Small multiplicative noise leaves the loss landscape similar: Adam's statistics carry on."""
    pop = varied_population(DISCRETE)
    m, v = _adam_with_history(pop)
    steps = pop.adam.steps.clone()
    before = pop.params.detach().clone()
    notes = _mutator(pop, parameters=1.0).mutate(pop, protected=set())
    assert all(n.startswith("params") for n in notes), notes
    assert all(not torch.equal(pop.params[p].detach(), before[p]) for p in range(pop.size))
    assert torch.equal(pop.adam.exp_avg, m) and torch.equal(pop.adam.exp_avg_sq, v)
    assert torch.equal(pop.adam.steps, steps)
    assert (m != 0).any() and (v != 0).any(), "the check needs moments that zeroing would change"


def test_gather_moves_everything_a_member_owns():
    pop = varied_population(DISCRETE)
    _adam_with_history(pop)
    pop.obs_norm.mean = torch.arange(pop.size * pop.net.obs_dim, dtype=torch.float32).view(pop.size, -1)
    pop.hp["lr"] = np.array([1e-3, 2e-3, 3e-3])
    snapshot = (pop.params.detach().clone(), pop.adam.exp_avg.clone(), pop.obs_norm.mean.clone(),
                pop.arch.widths.copy())
    idx = np.array([2, 2, 0])
    pop.gather(idx)
    assert torch.equal(pop.params.detach(), snapshot[0][idx])
    assert torch.equal(pop.adam.exp_avg, snapshot[1][idx])
    assert torch.equal(pop.obs_norm.mean, snapshot[2][idx])
    assert np.array_equal(pop.arch.widths, snapshot[3][idx])
    assert np.allclose(pop.hp["lr"], [3e-3, 3e-3, 1e-3])
    assert all(v.requires_grad and v.is_leaf for v in pop.views.values())
    assert pop.masks.width == int(pop.arch.widths.max())


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "batched"])
def test_batched_adam_equals_torch_adam_per_member(fused):
    g = torch.Generator().manual_seed(0)
    params = torch.randn(3, 10, generator=g)
    lrs = torch.tensor([1e-3, 1e-2, 5e-4])
    refs = [params[p].clone().requires_grad_(True) for p in range(3)]
    opts = [torch.optim.Adam([refs[p]], lr=float(lrs[p]), eps=1e-5) for p in range(3)]
    adam = BatchedAdam(3, 10, torch.device("cpu"))
    for step in range(6):
        grad = torch.randn(3, 10, generator=g)
        active = torch.tensor([1.0, float(step % 2 == 0), 1.0])  # member 1 sits out odd steps
        adam.step(params, grad, lrs, active, fused=fused)
        for p in range(3):
            if active[p]:
                refs[p].grad = grad[p].clone()
                opts[p].step()
    for p in range(3):
        assert torch.allclose(params[p], refs[p].detach(), atol=1e-7)
    assert adam.steps.tolist() == [6.0, 3.0, 6.0]


def _rl_hp_only(hp_ranges, cap=RolloutCap(1, 32), seed=0):
    cfg = MutationConfig(no_mutation=0.0, parameters=0.0, architecture=0.0, activation=0.0, rl_hp=1.0)
    return Mutator(cfg, NetConfig(), hp_ranges, cap, np.random.default_rng(seed), torch.Generator().manual_seed(0))


def test_a_hyperparameter_at_zero_grows_to_a_small_value_within_bounds():
    """Every env preset starts ent_coef at 0, which no multiplicative step can leave: a grow takes it
    to ZERO_STEP x max (then it moves multiplicatively), a shrink leaves it at 0."""
    pop = varied_population(DISCRETE)
    notes, values = set(), set()
    for seed in range(20):
        pop.hp["ent_coef"][:] = 0.0
        notes.update(_rl_hp_only({"ent_coef": HPRange(0.0, 0.05)}, seed=seed).mutate(pop, protected=set()))
        values.update(pop.hp["ent_coef"].tolist())
    assert values == {0.0, 0.0005}, values  # 1% of max=0.05, or unchanged by a shrink
    assert "ent_coef 0->0.0005" in notes
    pop.hp["ent_coef"][:] = 0.0005
    _rl_hp_only({"ent_coef": HPRange(0.0, 0.05, 1.5, 0.5)}).mutate(pop, protected=set())
    assert set(pop.hp["ent_coef"].tolist()) <= {0.0005 * 1.5, 0.0005 * 0.5}
    assert ZERO_STEP == 0.01


def test_a_hyperparameter_that_cannot_move_is_not_drawn():
    """ent_coef at 0 with grow_factor 1 (env=pendulum_novel: entropy may only decay) can never move;
    the mutator then draws among the others instead of wasting the mutation."""
    pop = varied_population(DISCRETE)
    pop.hp["ent_coef"][:] = 0.0
    frozen = {"ent_coef": HPRange(0.0, 0.001, 1.0, 0.9)}
    assert _rl_hp_only(frozen).mutate(pop, protected=set()) == ["none"] * 3
    notes = _rl_hp_only({**frozen, "lr": HPRange(1e-4, 1e-2)}).mutate(pop, protected=set())
    assert all(note.startswith("lr") for note in notes), notes


@pytest.mark.parametrize("name, old, grow, bounds, cap, expected", [
    # multiplicative steps
    ("lr", 1e-3, True, HPRange(1e-4, 1e-2, 1.2, 0.8), RolloutCap(1, 64), 1.2e-3),
    ("lr", 1e-3, False, HPRange(1e-4, 1e-2, 1.2, 0.8), RolloutCap(1, 64), 0.8e-3),
    # clamped to hp_config bounds
    ("lr", 9e-3, True, HPRange(1e-4, 1e-2, 1.2, 0.8), RolloutCap(1, 64), 1e-2),
    ("gamma", 0.99, True, HPRange(0.9, 0.999, 1.2, 0.8), RolloutCap(1, 64), 0.999),
    # integers round away from the old value, so a step always moves
    ("update_epochs", 4, True, HPRange(1, 10, 1.1, 0.9), RolloutCap(1, 64), 5),
    ("update_epochs", 4, False, HPRange(1, 10, 1.1, 0.9), RolloutCap(1, 64), 3),
    ("batch_size", 32, True, HPRange(8, 1024, 1.2, 0.8), RolloutCap(1, 512), 39),
    # batch_size: capped by one member's rollout, and (recurrent) at least one BPTT sequence
    ("batch_size", 60, True, HPRange(8, 1024, 1.2, 0.8), RolloutCap(1, 64), 64),
    ("batch_size", 18, False, HPRange(8, 1024, 1.2, 0.8), RolloutCap(16, 64), 16),  # 14 < one sequence
    # a value at 0
    ("ent_coef", 0.0, True, HPRange(0.0, 0.05, 1.2, 0.8), RolloutCap(1, 64), 0.0005),
    ("ent_coef", 0.0, False, HPRange(0.0, 0.05, 1.2, 0.8), RolloutCap(1, 64), 0.0),
    ("ent_coef", 0.0, True, HPRange(0.0, 0.05, 1.0, 0.8), RolloutCap(1, 64), 0.0),
])
def test_the_mutation_rule(name, old, grow, bounds, cap, expected):
    value = HPARAMS[name].mutate(old, grow, bounds, cap)
    assert value == pytest.approx(expected, rel=1e-12)
    assert type(value) is (int if name in ("batch_size", "update_epochs") else float)


def test_every_tunable_hyperparameter_is_in_the_table_and_carried_by_each_member():
    import dataclasses

    from evorl_cli.config import PPOConfig

    assert set(MUTABLE_HPS) == {"lr", "batch_size", "ent_coef", "vf_coef", "clip_coef", "gamma", "gae_lambda",
                                "max_grad_norm", "update_epochs"}
    fields = {f.name: f.type for f in dataclasses.fields(PPOConfig)}
    for name, row in HPARAMS.items():  # the start value's schema type agrees with the table
        assert fields[name] == row.kind.__name__, name
    pop = varied_population(DISCRETE)
    assert set(pop.hp) == set(MUTABLE_HPS)
    assert {k: type(v) for k, v in pop.hyperparameters(0).items()} == {k: r.kind for k, r in HPARAMS.items()}


# --- architecture search both ways ------------------------------------------------------------------


def test_removal_mutations_give_the_narrow_network_and_a_cheaper_batch():
    """Removing units or a layer leaves each member computing exactly its narrower network (the
    NarrowNet oracle), and the layout shrinks to the widest/deepest member left."""
    pop = varied_population(DISCRETE, widths=([96, 64], [32, 48, 24], [16]))
    assert pop.net.cap == Capacity(96, 3)
    mutator = _mutator(pop, architecture=1.0)
    mutator.cfg.remove_prob, mutator.cfg.new_layer_prob = 1.0, 0.5
    units = pop.arch.widths.sum(1)
    notes = []
    for _ in range(4):
        notes += mutator.mutate(pop, protected=set())
    assert any(n.startswith("nodes") for n in notes) and any(n.startswith("layer -1") for n in notes), notes
    assert (pop.arch.widths[:, 0] <= [96, 32, 16]).all() and (pop.arch.n_layers <= [2, 3, 1]).all()
    assert (pop.arch.widths.sum(1)[:2] < units[:2]).all()  # the two bigger members really shrank
    need = pop.needed_capacity()
    assert pop.net.cap == need and need.width < 96
    assert pop.params.shape[1] == pop.net.resized(need).num_params < varied_population(DISCRETE).params.shape[1]
    obs = torch.randn(6, pop.net.obs_dim)
    with torch.no_grad():
        head, value, _ = pop.forward_normalized(obs.expand(pop.size, -1, -1))
    for p in range(pop.size):
        want_head, want_value = NarrowNet(pop, p).forward(obs)
        assert torch.allclose(head[p], want_head, atol=1e-5) and torch.allclose(value[p], want_value, atol=1e-5)


def test_a_size_step_is_at_most_a_factor_of_two_either_way():
    """However large the drawn step, a layer loses at most half its units (and never drops below
    net.min_width: 64 units with a step of 64 keep 32, not the 8-unit floor) and at most doubles
    (up to the cap)."""
    from evorl_cli.evolve.mutate import _narrower, _wider

    assert _narrower(64, 64, 8) == 32 and _narrower(64, 16, 8) == 48 and _narrower(48, 32, 8) == 24
    assert _narrower(15, 16, 8) == 8 and _narrower(9, 64, 8) == 8 and _narrower(8, 16, 8) == 8
    assert _wider(32, 64, 256) == 64 and _wider(64, 16, 256) == 80 and _wider(200, 64, 256) == 256
    assert _wider(8, 64, 256) == 16 and _wider(256, 16, 256) == 256
    pop = varied_population(DISCRETE, widths=([64, 64], [64, 64], [64, 64]), activations=("tanh",) * 3)
    mutator = _mutator(pop, architecture=1.0)
    mutator.cfg.remove_prob, mutator.cfg.new_layer_prob = 1.0, 0.0
    mutator.cfg.node_choices = [64]
    for _ in range(3):
        before = pop.arch.widths.copy()
        mutator.mutate(pop, protected=set())
        changed = pop.arch.widths != before
        assert changed.any() and (pop.arch.widths[changed] * 2 >= before[changed]).all()
        assert (pop.arch.widths[changed] < before[changed]).all()


def test_tournament_ties_go_to_the_smaller_network():
    fitness = np.array([-500.0, -500.0, -500.0, -90.0])
    size = np.array([300, 100, 200, 900])
    # A fitness difference always wins over size: the best (and biggest) member is the elite.
    assert tournament_select(fitness, 4, True, np.random.default_rng(0), size)[0] == 3
    flat = np.full(4, -500.0)
    parents = tournament_select(flat, 4, True, np.random.default_rng(0), size)
    assert (parents == 1).all()  # every tournament of the whole population: the smallest
    # Without sizes the draw order decides, as before.
    assert tournament_select(flat, 4, True, np.random.default_rng(0))[0] == 0


def _mean_size_after_flat_generations(remove_prob: float, prefer_small: bool, generations: int = 30) -> tuple:
    """Evolution with every member equally fit: tournament, gather, architecture mutation only."""
    pop = varied_population(DISCRETE, widths=([64, 64], [64, 64], [64, 64], [64, 64], [64, 64], [64, 64]),
                            activations=("tanh",) * 6, max_width=256)
    mutator = Mutator(MutationConfig(no_mutation=0.0, parameters=0.0, architecture=1.0, activation=0.0, rl_hp=0.0,
                                     remove_prob=remove_prob),
                      NetConfig(max_width=256, max_layers=3), {}, RolloutCap(1, 32), np.random.default_rng(1),
                      torch.Generator().manual_seed(1))
    rng = np.random.default_rng(2)
    start = pop.arch.num_weights(pop.net.obs_dim).mean()
    for _ in range(generations):
        size = pop.arch.num_weights(pop.net.obs_dim) if prefer_small else None
        pop.gather(tournament_select(np.zeros(pop.size), 2, True, rng, size))
        mutator.mutate(pop, protected={0})
    return start, pop.arch.num_weights(pop.net.obs_dim).mean(), pop.params.shape[1]


def test_equal_fitness_does_not_ratchet_the_size_up():
    """The oracle on sizes: with nothing to choose between members, the default search (removal as
    likely as growth, ties to the smaller net) ends no bigger than it started, where add-only
    search (the old default) grows."""
    start, end, _ = _mean_size_after_flat_generations(remove_prob=0.5, prefer_small=True)
    assert end <= start
    start_old, end_old, _ = _mean_size_after_flat_generations(remove_prob=0.0, prefer_small=False)
    assert end_old > 2 * start_old


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_every_kinds_notes_are_recognised_as_that_kind(name):
    """The lineage chart colours a child by the kind that wrote its note: each registered kind's
    real notes (several draws) map back to it, or to "none" when the draw changed nothing."""
    pop = varied_population(DISCRETE)
    mutator = _mutator(pop, **{name: 1.0})
    drawn = [mutator.mutate(pop, protected={0}) for _ in range(4)]
    assert all(notes[0] == "elite" and mutation_kind(notes[0]) == "elite" for notes in drawn)
    seen = [note for notes in drawn for note in notes[1:]]
    for note in seen:
        assert mutation_kind(note) == ("none" if note.startswith("none") or name == "no_mutation" else name), note
    assert any(mutation_kind(note) == name for note in seen) or name == "no_mutation"


def test_a_new_kind_is_recognised_by_its_note_prefix(monkeypatch):
    from evorl_cli.evolve import mutate

    monkeypatch.setitem(mutate.MUTATIONS, "dropout",
                        mutate.MutationKind("dropout", lambda m, pop, p: "dropout 0.1", ("dropout",)))
    assert mutate.kind_of("dropout 0.1") == "dropout"
    assert mutate.kind_of("lr 0.001->0.0012") == "rl_hp" and mutate.kind_of("lrx 1") == "lrx"
