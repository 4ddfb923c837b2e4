"""The shipped configs compose and validate; the schema rejects what it should."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from helpers import tiny_config

from evorl_cli.cli import CONF_DIR, resumed_config
from evorl_cli.config import build_train_config
from evorl_cli.errors import EvorlError

CONF = Path(CONF_DIR)
GROUPS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("env", "net", "mutation", "hp_config", "algo")}


def _compose(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize("env", GROUPS["env"])
@pytest.mark.parametrize("net", GROUPS["net"])
def test_every_env_and_net_composes_and_validates(env, net):
    config = build_train_config(_compose([f"env={env}", f"net={net}"]))
    assert config.env.name == env and config.net.name == net
    assert config.algo.batch_size <= config.algo.rollout_steps * config.env.num_envs


@pytest.mark.parametrize("group", ["mutation", "hp_config", "algo"])
def test_every_group_option_composes(group):
    for option in GROUPS[group]:
        build_train_config(_compose([f"{group}={option}"]))


def test_env_files_tune_algo_after_the_algo_defaults():
    config = build_train_config(_compose(["env=acrobot"]))
    assert config.algo.ent_coef == 0.0  # acrobot.yaml overrides algo/ppo.yaml's 0.01
    config = build_train_config(_compose(["env=acrobot", "algo.ent_coef=0.02"]))
    assert config.algo.ent_coef == 0.02  # the command line wins


@pytest.mark.parametrize("overrides, message", [
    ({"population.size": 0}, "population.size"),
    ({"evolution.tournament_size": 9}, "tournament_size"),
    ({"algo.lr": -1.0}, "algo.lr"),
    ({"algo.batch_size": 10_000}, "rollout size"),
    ({"hp_config.lr": {"min": 0.1, "max": 0.01}}, "greater than max"),
    ({"hp_config.lrr": {"min": 0.1, "max": 0.2}}, "did you mean lr"),
    ({"net.activation": "swish"}, "net.activation"),
    ({"net.init": "xavier"}, "net.init=xavier: choose one of orthogonal, uniform"),
    ({"net.hidden_sizes": [512]}, "max_width"),
    ({"algo.gamma": 1.5}, "algo.gamma"),
    ({"algo.lr_schedule": "cosine"}, r"algo.lr_schedule=cosine: use constant or linear"),
    ({"evolution.selection_max_steps": 0}, r"evolution.selection_max_steps=0: must be positive or null"),
    ({"evolution.selection_max_steps": 200, "evolution.selection": "train"},
     r"selection_max_steps=200 cuts selection episodes, which evolution.selection=train does not play"),
])
def test_bad_values_raise_one_clear_error(overrides, message):
    with pytest.raises(EvorlError, match=message) as info:
        tiny_config(**overrides)
    assert "\n" not in str(info.value)


# (start value refused, start value accepted) for each tunable hyperparameter: the valid ranges,
# written out by hand as the oracle for hparams.TABLE.
RANGES = {
    "lr": ([0.0, -1e-3], [1e-6, 0.5]),
    "batch_size": ([0, -8], [1, 64]),  # tiny_config's rollout: 32 steps x 2 envs = 64
    "ent_coef": ([-0.01], [0.0, 0.5]),
    "vf_coef": ([-0.5], [0.0, 2.0]),
    "clip_coef": ([-0.1], [0.0, 0.3]),
    "gamma": ([-0.1, 1.01], [0.0, 1.0]),
    "gae_lambda": ([-0.1, 1.5], [0.0, 1.0]),
    "max_grad_norm": ([-1.0], [0.0, 10.0]),
    "update_epochs": ([0, -1], [1, 30]),
}


@pytest.mark.parametrize("name", RANGES)
def test_each_hyperparameters_start_value_is_checked_against_its_range(name):
    from evorl_cli.hparams import MUTABLE_HPS

    assert set(RANGES) == set(MUTABLE_HPS)
    bad, good = RANGES[name]
    for value in bad:
        with pytest.raises(EvorlError, match=rf"^algo\.{name}={value}: the .* must be ") as info:
            tiny_config(**{f"algo.{name}": value, "hp_config": {}})
        assert "\n" not in str(info.value)
    for value in good:
        assert getattr(tiny_config(**{f"algo.{name}": value, "hp_config": {}}).algo, name) == value


@pytest.mark.parametrize("overrides, message", [
    ({"algo.batch_size": 65},
     "algo.batch_size=65: must be between 1 and the rollout size algo.rollout_steps*env.num_envs=64"),
    ({"algo.batch_size": 8, "net.recurrent": "lstm", "algo.max_seq_len": 16},
     "algo.batch_size=8: must hold at least one BPTT sequence (16 steps) and at most the rollout"),
    ({"hp_config.lr": {"min": 0.0, "max": 0.01}}, "hp_config.lr.min=0.0: the learning rate must be positive"),
    ({"hp_config.gamma": {"min": 0.9, "max": 1.5}}, "hp_config.gamma.max=1.5: the discount must be within [0, 1]"),
    ({"hp_config.update_epochs": {"min": 0, "max": 8}}, "hp_config.update_epochs.min=0.0: the number of epochs"),
    ({"hp_config.vf_coef": {"min": -1.0, "max": 1.0}},
     "hp_config.vf_coef.min=-1.0: the value loss coefficient must be at least 0"),
    ({"hp_config.lr": {"min": 1e-4, "max": 1e-2, "grow_factor": 0.0}},
     "grow_factor=0.0 and shrink_factor=0.8 must be positive"),
    ({"hp_config.batch_size": {"min": 128, "max": 1024}},
     "hp_config.batch_size=[128, 1024] leaves no value the rollout allows"),
    ({"hp_config.batch_size": {"min": 8, "max": 16}},
     "algo.batch_size=32 lies outside hp_config.batch_size [8.0, 16.0]"),
])
def test_hp_config_and_rollout_cap_messages(overrides, message):
    with pytest.raises(EvorlError) as info:
        tiny_config(**overrides)
    assert message in str(info.value)


def test_a_recurrent_batch_bound_below_one_sequence_is_raised_by_mutation_not_refused():
    """hp_config.batch_size.min below one BPTT sequence is fine: mutation clamps to the sequence."""
    from evorl_cli.hparams import HPARAMS, RolloutCap

    config = tiny_config(**{"net.recurrent": "lstm", "algo.max_seq_len": 16,
                            "hp_config.batch_size": {"min": 1, "max": 64}})

    assert HPARAMS["batch_size"].mutation_limits(config.hp_config["batch_size"], RolloutCap.of(config)) == (16, 64)


def test_a_hyperparameter_can_be_added_to_hp_config_from_the_command_line():
    from evorl_cli.config import HPRange

    config = build_train_config(_compose(["+hp_config.gamma={min: 0.9, max: 0.999}", "+hp_config.update_epochs.min=1",
                                          "+hp_config.update_epochs.max=8"]))
    assert config.hp_config["gamma"] == HPRange(0.9, 0.999, 1.2, 0.8)
    assert config.hp_config["update_epochs"] == HPRange(1, 8, 1.2, 0.8)
    assert set(config.hp_config) == {"lr", "batch_size", "ent_coef", "gamma", "update_epochs"}
    with pytest.raises(EvorlError, match=r"hp_config.lrr: not a mutable hyperparameter \(did you mean lr\?\)"):
        build_train_config(_compose(["+hp_config.lrr={min: 0.1, max: 0.2}"]))
    with pytest.raises(EvorlError, match="hp_config.gamma.min"):
        build_train_config(_compose(["+hp_config.gamma={min: abc, max: 0.999}"]))


def test_unknown_key_and_wrong_type_are_named():
    with pytest.raises(EvorlError, match="unknown config key 'algo.nope'"):
        build_train_config({"algo": {"nope": 1}})
    with pytest.raises(EvorlError, match="algo.lr"):
        build_train_config({"algo": {"lr": "fast"}})


def test_resume_accepts_budget_changes_but_not_a_different_run():
    saved = {"env": {"id": "CartPole-v1"}, "max_steps": 1000}
    assert resumed_config(saved, ["max_steps=5000", "resume=x"]).max_steps == 5000
    with pytest.raises(EvorlError, match="cannot change when resuming"):
        resumed_config(saved, ["algo.lr=0.5"])
    with pytest.raises(EvorlError, match=r"holds a run on CartPole-v1, not on Acrobot-v1 \(env.id=Acrobot-v1\)"):
        resumed_config(saved, ["env.id=Acrobot-v1"])
    assert resumed_config(saved, ["env.id=CartPole-v1"]).env.id == "CartPole-v1"  # the same env: a check only


def test_a_start_value_outside_its_mutation_bounds_is_rejected():
    with pytest.raises(EvorlError, match="outside hp_config.ent_coef"):
        tiny_config(**{"algo.ent_coef": 0.0, "hp_config.ent_coef": {"min": 0.001, "max": 0.01}})


@pytest.mark.parametrize("env, net", [("acrobot", "mlp"), ("pendulum", "lstm"), ("pixel_quadrant", "cnn"),
                                      ("pixel_quadrant", "cnn_lstm")])
def test_preflight_accepts_a_net_that_fits_the_observations(env, net):
    from evorl_cli.cli import preflight

    preflight("train", [f"env={env}", f"net={net}"])  # raises EvorlError otherwise


@pytest.mark.parametrize("backend", ["auto", "gymnasium"])
@pytest.mark.parametrize("override", ["env.kwargs.g=2.0", "+env.kwargs.g=2.0"], ids=["plain", "plus"])
def test_env_kwargs_take_new_keys_with_or_without_plus_and_reach_the_env(override, backend):
    from evorl_cli.envs.batch import EnvBatch

    config = build_train_config(_compose(["env=pendulum", override, f"env.backend={backend}"]))
    assert config.env.kwargs == {"g": 2.0}
    env = EnvBatch(config.env, 2)
    try:  # the oracle: the gravity the env itself steps with (ours, or Gymnasium's PendulumEnv)
        made = env.env if backend == "auto" else env.env.envs[0].unwrapped
        assert type(made).__name__ == ("PendulumVectorEnv" if backend == "auto" else "PendulumEnv")
        assert made.g == 2.0
    finally:
        env.close()


def test_other_unknown_keys_are_still_refused():
    from evorl_cli.cli import preflight

    with pytest.raises(EvorlError, match="unknown config key 'env.kwarg.g'"):
        preflight("train", ["env.kwarg.g=2.0"])
    with pytest.raises(EvorlError, match="unknown config key 'env.nope'"):
        preflight("train", ["env.nope=1"])


MISSING = [  # (env id, the module to hide, Gymnasium's modules that import it, the extra that brings it)
    ("LunarLander-v3", "Box2D", "gymnasium.envs.box2d", "needs Box2D: pip install \"evorl-cli[box2d]\""),
    ("HalfCheetah-v5", "mujoco", "gymnasium.envs.mujoco", "needs MuJoCo: pip install \"evorl-cli[mujoco]\""),
    ("ALE/Pong-v5", "ale_py", "ale_py",
     "needs the Arcade Learning Environment (ale-py): pip install \"evorl-cli[atari]\""),
]


@pytest.mark.parametrize("env_id, module, importers, message", MISSING, ids=[m[1] for m in MISSING])
def test_a_missing_optional_dependency_names_our_extra(monkeypatch, env_id, module, importers, message):
    """Simulated whether or not the package is installed: importing it fails, as without it."""
    import sys

    import gymnasium as gym

    from evorl_cli.cli import preflight

    for name in [n for n in sys.modules if n == importers or n.startswith(importers + ".")]:
        monkeypatch.delitem(sys.modules, name)  # so Gymnasium's env modules import it afresh
    # After the loop: for ale_py the module is its own importer, and the loop would undo this.
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    for key in [k for k in gym.registry if k.startswith("ALE/")] if module == "ale_py" else []:
        monkeypatch.delitem(gym.registry, key)  # as before ale_py registered them
    with pytest.raises(EvorlError) as info:
        preflight("train", [f"env.id={env_id}", "env.backend=gymnasium"])
    assert str(info.value) == f"env.id={env_id} {message}"


def _threshold(env_id: str) -> str:
    import gymnasium as gym

    return f"{gym.spec(env_id).reward_threshold:g}"  # the oracle: what Gymnasium registered


def test_a_new_env_id_with_the_presets_target_warns_once():
    from evorl_cli.cli import preflight

    warnings = preflight("train", ["-m", "seed=0,1", "env=pendulum", "env.id=MountainCarContinuous-v0"])
    assert warnings == [
        "env.id=MountainCarContinuous-v0 keeps env.target=-200 from env=pendulum (made for Pendulum-v1): "
        "set env.target=<score for MountainCarContinuous-v0>, or env.target=null for its registered threshold "
        f"({_threshold('MountainCarContinuous-v0')})"]
    warnings = preflight("train", ["env=pendulum_novel", "env.id=Acrobot-v1", "net=lstm"])
    assert len(warnings) == 1
    assert "keeps env.target=-200 and env.mask_indices=[2] from env=pendulum_novel" in warnings[0]
    assert f"registered threshold ({_threshold('Acrobot-v1')})" in warnings[0]
    assert "env.mask_indices=[] to see the whole observation" in warnings[0]
    warnings = preflight("train", ["env=pendulum_novel", "env.id=Acrobot-v1", "env.target=-100"])
    assert len(warnings) == 1 and "env.target" not in warnings[0] and "env.mask_indices=[2]" in warnings[0]


@pytest.mark.parametrize("overrides", [
    ["env=pendulum", "env.id=MountainCarContinuous-v0", "env.target=null"],
    ["env=pendulum", "env.id=MountainCarContinuous-v0", "env.target=90"],
    ["env=pendulum", "env.id=Pendulum-v1"],  # the preset's own id
    ["env=pendulum"],
    ["env=cartpole", "env.target=400"],
])
def test_no_warning_when_the_target_is_set_or_belongs_to_the_env(overrides):
    from evorl_cli.cli import preflight

    assert preflight("train", overrides) == []


@pytest.mark.parametrize("overrides, warning", [
    (["logger.wandb.mode=offline"], "logger.wandb.* set, but that logger is off, so unused: "
                                    "add logger.wandb.enabled=true"),
    (["logger=tensorboard", "logger.wandb.mode=offline", "logger.tensorboard.dir=tb"],
     "logger.wandb.* set, but that logger is off, so unused: add logger.wandb.enabled=true"),
    (["logger.tensorboard.dir=tb", "logger.wandb.project=p"],
     "logger.tensorboard.*, logger.wandb.* set, but those loggers are off, so unused: "
     "add logger.tensorboard.enabled=true logger.wandb.enabled=true"),
    (["logger=wandb", "logger.wandb.mode=offline"], None),
    (["logger.tensorboard.enabled=false"], None),
])
def test_options_of_a_logger_that_is_off_warn(overrides, warning):
    """Never a setting silently ignored: options given to a backend that stays off say so."""
    from evorl_cli.cli import preflight

    assert preflight("train", ["env=cartpole", *overrides]) == ([warning] if warning else [])
