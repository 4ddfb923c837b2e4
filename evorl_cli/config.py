"""Typed run configuration: the schema every composed Hydra config is checked against.

`DictConfig` stops here: `build_train_config` merges the composed config into these dataclasses
(types and unknown keys are checked by OmegaConf), then `validate` checks ranges and cross-field
rules, so the rest of the code works with plain, already-valid dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from evorl_cli import loggers as logger_backends
from evorl_cli.errors import EvorlError
from evorl_cli.hparams import HPARAMS, INTEGER_HPS, MUTABLE_HPS, RolloutCap, lookup  # noqa: F401  (re-exported)
from evorl_cli.schedule import LR_SCHEDULES

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "leaky_relu", "silu")
NET_INITS = ("orthogonal", "uniform")  # nets/mlp.py linear_init


def mutation_weight(default: float):
    """A `MutationConfig` field that is the relative weight of the mutation kind registered under
    its name in evolve/mutate.py (each non-elite member draws one, with probability weight / sum)."""
    return field(default=default, metadata={"mutation_weight": True})


@dataclass
class EnvConfig:
    """Which environment, how many copies per member, and when it counts as solved."""

    name: str = "acrobot"
    id: str = "Acrobot-v1"
    num_envs: int = 8  # sub-environments per member
    target: Optional[float] = None  # stop when the best member's fitness reaches it; None: spec's threshold
    max_episode_steps: Optional[int] = None  # None: the registered limit
    backend: str = "auto"  # auto (batched NumPy where we have it) | numpy | gymnasium | envpool (optional extra)
    vector: str = "sync"  # Gymnasium's vector env for envs we do not batch: sync (one process) | async (one per sub-env)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    mask_indices: List[int] = field(default_factory=list)  # observation entries zeroed (partial observability)
    channels_last: bool = False  # image observations arrive as [H, W, C]: move channels first
    wrappers: List[Any] = field(default_factory=list)  # Hydra `_target_` specs, each called with env=...


@dataclass
class PPOConfig:
    """PPO settings; the mutable ones are each member's starting value."""

    name: str = "ppo"
    rollout_steps: int = 128  # steps per env between updates
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | linear: each member's lr times 1 - training steps / max_steps
    batch_size: int = 128  # env steps per minibatch (recurrent nets: whole sequences, batch_size // seq length)
    update_epochs: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: Optional[float] = None
    action_std_init: float = 0.6  # continuous actions: initial standard deviation
    normalize_advantages: bool = True
    normalize_obs: bool = False
    normalize_rewards: bool = False  # scale rewards by the running std of discounted returns, per member
    clip_vloss: bool = False
    bptt: str = "chunked"  # recurrent nets: chunked (max_seq_len) | overlap (chunks overlap by half) | whole
    max_seq_len: int = 16  # recurrent nets: steps per BPTT sequence (chunked, overlap)


@dataclass
class CNNConfig:
    """Convolutional encoder for image observations (ReLU after each layer, then flattened)."""

    channels: List[int] = field(default_factory=lambda: [16, 32])
    kernels: List[int] = field(default_factory=lambda: [3, 3])
    strides: List[int] = field(default_factory=lambda: [1, 1])


@dataclass
class NetConfig:
    """Network shape: [cnn] -> [recurrent core] -> MLP (hidden_sizes) -> linear heads, per branch.

    The max_* values bound what architecture mutations may grow to; parameters are only laid out
    for what the widest member uses."""

    name: str = "mlp"
    hidden_sizes: List[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    # Initialisation of the MLP layers and linear heads: orthogonal (gains sqrt 2, policy 0.01,
    # value 1, zero biases) | uniform (PyTorch's nn.Linear default, SB3's ortho_init=False).
    # CNN and recurrent cores are always orthogonal.
    init: str = "orthogonal"
    max_width: int = 256
    max_layers: int = 4
    min_width: int = 8
    share_encoder: bool = False  # actor and critic share everything but their linear heads
    recurrent: Optional[str] = None  # null | lstm | gru
    hidden_size: int = 64  # recurrent state size per layer
    rnn_layers: int = 1
    max_hidden_size: int = 256
    cnn: Optional[CNNConfig] = None
    # At most this many buckets of members by shape (depth and widest layer): each runs as its own
    # batch cut to its own widest and deepest member (1: one batch padded to the widest and deepest
    # member; see nets/arch.py). Kept under its first name, though depth now splits buckets too.
    width_buckets: int = 2


@dataclass
class MutationConfig:
    """Relative weights of each mutation kind (normalised to sum to 1) and their strengths."""

    name: str = "default"
    no_mutation: float = mutation_weight(0.4)
    parameters: float = mutation_weight(0.2)
    architecture: float = mutation_weight(0.2)
    activation: float = mutation_weight(0.2)
    rl_hp: float = mutation_weight(0.2)
    new_layer_prob: float = 0.2  # of architecture mutations: layer (vs nodes)
    remove_prob: float = 0.5  # of architecture mutations: remove instead of add (0.5: size follows the task)
    mutation_sd: float = 0.1  # parameter noise, relative to each weight's magnitude
    node_choices: List[int] = field(default_factory=lambda: [16, 32, 64])
    activations: List[str] = field(default_factory=lambda: ["relu", "tanh", "elu", "gelu"])


# The mutation kinds' weight fields, in declared order (the order a mutation draw indexes).
MUTATION_WEIGHTS = tuple(f.name for f in fields(MutationConfig) if f.metadata.get("mutation_weight"))


@dataclass
class HPRange:
    """Bounds and step factors of one mutable hyperparameter (what they may be: `hparams.TABLE`)."""

    min: float = 0.0
    max: float = 1.0
    grow_factor: float = 1.2
    shrink_factor: float = 0.8


@dataclass
class PopulationConfig:
    size: int = 4


@dataclass
class EvolutionConfig:
    """Generations, selection and confirmation (see fitness.py for why these are two numbers)."""

    evo_steps: int = 8192  # env steps per member between generations (rounded up to whole rollouts)
    selection: str = "eval"  # what ranks members: eval (selection_episodes each) | train (training returns)
    selection_episodes: int = 10  # with selection=eval: episodes per member per generation
    selection_max_steps: Optional[int] = None  # with selection=eval: cut selection episodes here (their return so far counts)
    confirm_episodes: int = 100  # fresh episodes that confirm a candidate before it counts
    deterministic: bool = True  # evaluation actions: the policy's most likely action, or sampled (false)
    eval_max_steps: Optional[int] = None  # cap on an evaluation episode; None: the env's limit
    tournament_size: int = 2
    elitism: bool = True


@dataclass
class CheckpointConfig:
    keep: int = 0  # also keep every keep-th generation's population (0: only latest and best)


# The `logger` node: one field per optional backend in evorl_cli/loggers/ (each module declares its
# own options), so a new backend is one new file there.
LoggerConfig = logger_backends.options_schema(__name__)


@dataclass
class PlotConfig:
    on_finish: bool = True  # write the run's plots (evorl plot) when it ends; a failure only warns


@dataclass
class TrainConfig:
    """Everything one `evorl train` run needs."""

    seed: int = 0
    max_steps: int = 2_000_000  # env-step budget, summed over the population
    device: str = "auto"
    torch_threads: Optional[int] = None  # None: leave torch's default
    resume: Optional[str] = None
    # With resume: let the checkpoint's env config import and run code it names (trust.py). A
    # permission of this command line: never read back from a checkpoint.
    trust_checkpoint: bool = False
    progress: bool = True
    population: PopulationConfig = field(default_factory=PopulationConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: PPOConfig = field(default_factory=PPOConfig)
    net: NetConfig = field(default_factory=NetConfig)
    mutation: MutationConfig = field(default_factory=MutationConfig)
    hp_config: Dict[str, HPRange] = field(default_factory=dict)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    plot: PlotConfig = field(default_factory=PlotConfig)


@dataclass
class GivenEnv:
    """The env a user names for a checkpoint on the command line (`evorl eval ckpt=... env.id=CartPole-v1`,
    or on a resume): a checkpoint of another env is refused, and code its env names (a `module:Env`
    id, wrappers other than Gymnasium's) may run when given again exactly (trust.py)."""

    id: Optional[str] = None  # None: whatever the checkpoint recorded
    wrappers: Optional[List[Any]] = None  # None: whatever the checkpoint recorded


@dataclass
class EvalConfig:
    """`evorl eval`: which checkpoint and member, how many fresh episodes, how to act."""

    ckpt: str = MISSING  # run directory (its best member) or a .safetensors checkpoint
    member: Optional[int] = None  # None: the best member; i: member i of the latest population
    episodes: Optional[int] = None  # None: as many as the run confirmed with
    deterministic: Optional[bool] = None  # None: as the run evaluated
    per_episode: bool = False
    seed: int = 0
    max_steps: Optional[int] = None  # cap on an episode; None: the env's limit
    device: str = "cpu"
    trust_checkpoint: bool = False  # let the checkpoint's env run code it names (trust.py)
    env: GivenEnv = field(default_factory=GivenEnv)  # the env expected (env.id=...); another is refused


@dataclass
class RenderConfig:
    """`evorl render`: which checkpoint and member, how many episodes, where the GIF goes."""

    ckpt: str = MISSING
    member: Optional[int] = None
    episodes: int = 1
    fps: int = 30
    out: Optional[str] = None  # None: <run dir>/<env>_member<i>.gif
    deterministic: Optional[bool] = None
    seed: int = 0
    max_steps: Optional[int] = None
    device: str = "cpu"
    trust_checkpoint: bool = False
    env: GivenEnv = field(default_factory=GivenEnv)


@dataclass
class InspectConfig:
    """`evorl inspect`: which checkpoint."""

    ckpt: str = MISSING


@dataclass
class PlotCommandConfig:
    """`evorl plot`: which run (or multirun sweep) directory; the PNGs go into it."""

    run: str = MISSING


@dataclass
class _TrainSchema(TrainConfig):
    """What Hydra composes `train` against: TrainConfig, with hp_config's entries left untyped so
    that `+hp_config.gamma={min: 0.9, max: 0.999}` can add one (OmegaConf refuses to assign a dict
    to a new key of a Dict[str, HPRange]); `build_train_config` then checks them as HPRange."""

    hp_config: Dict[str, Any] = field(default_factory=dict)


SCHEMAS = {"train_schema": _TrainSchema, "eval_schema": EvalConfig, "render_schema": RenderConfig,
           "inspect_schema": InspectConfig, "plot_schema": PlotCommandConfig}

# Free-form dicts of the schema: their keys belong to someone else (env.kwargs are the env
# constructor's options), so the command line may add keys to them without Hydra's `+` prefix.
OPEN_DICTS = ("env.kwargs",)


def register_schemas() -> None:
    """Make the schemas the base of each command's Hydra config (`train_schema` for train.yaml, ...),
    so every key exists and is type-checked.

    Hydra puts the whole composed config in struct mode (a new key is an error unless added with
    `+`). A node whose own struct flag is set to False keeps it, since OmegaConf reads a flag from
    the nearest node that sets it; so the `OPEN_DICTS` accept new keys while every other typo is
    still caught."""
    from hydra.core.config_store import ConfigStore

    for name, dataclass_ in SCHEMAS.items():
        schema = OmegaConf.structured(dataclass_)
        if dataclass_ is _TrainSchema:
            for key in OPEN_DICTS:
                OmegaConf.set_struct(OmegaConf.select(schema, key), False)
        ConfigStore.instance().store(name=name, node=schema)
    # `logger=<backend>` (or several: logger=[a,b]) switches a backend on: one option per module of
    # evorl_cli/loggers/, so a new backend needs no config file of its own.
    for name in logger_backends.discover():
        ConfigStore.instance().store(group="logger", name=name, package="logger", node={name: {"enabled": True}})


def to_dataclass(schema: type, cfg: DictConfig | dict) -> Any:
    """Merge `cfg` into `schema`, turning OmegaConf type and key errors into one-line EvorlErrors."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        reason = str(exc).splitlines()[0]
        if "not in" in reason or "Key '" in reason:
            raise EvorlError(f"unknown config key '{key}': check its spelling against `evorl train --cfg job`") from None
        raise EvorlError(f"config key '{key}': {reason}") from None


def sequence_length(c: TrainConfig) -> int:
    """Steps per training unit: 1 for feed-forward nets, the BPTT sequence length for recurrent ones."""
    if not c.net.recurrent:
        return 1
    return c.algo.rollout_steps if c.algo.bptt == "whole" else c.algo.max_seq_len


def build_train_config(cfg: DictConfig | dict) -> TrainConfig:
    """Type-check and validate a composed `train` config."""
    config: TrainConfig = to_dataclass(TrainConfig, cfg)
    validate(config)
    return config


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise EvorlError(message)


def validate(c: TrainConfig) -> None:
    """Check ranges and cross-field rules; the first problem found raises a one-line EvorlError."""
    a, n, m, e = c.algo, c.net, c.mutation, c.evolution
    _require(c.population.size >= 1, f"population.size={c.population.size}: must be at least 1")
    _require(c.max_steps > 0, f"max_steps={c.max_steps}: must be positive")
    _require(not c.trust_checkpoint or c.resume,
             "trust_checkpoint=true only applies to resume=<run>, whose checkpoint's env may name code; "
             "a new run builds the env you give it: drop trust_checkpoint")
    _require(c.device in ("auto", "cpu", "cuda") or c.device.startswith("cuda:"),
             f"device={c.device}: use auto, cpu or cuda")
    _require(c.env.num_envs >= 1, f"env.num_envs={c.env.num_envs}: must be at least 1")
    _require(c.env.backend in ("auto", "numpy", "gymnasium", "envpool"),
             f"env.backend={c.env.backend}: use auto, numpy, gymnasium or envpool")
    _require(c.env.vector in ("sync", "async"), f"env.vector={c.env.vector}: use sync or async")
    _require(a.rollout_steps >= 1, f"algo.rollout_steps={a.rollout_steps}: must be at least 1")
    _require(a.lr_schedule in LR_SCHEDULES, f"algo.lr_schedule={a.lr_schedule}: use {' or '.join(LR_SCHEDULES)}")
    _require(a.bptt in ("chunked", "overlap", "whole"), f"algo.bptt={a.bptt}: use chunked, overlap or whole")
    if n.recurrent and a.bptt != "whole":
        _require(a.max_seq_len >= 2 and a.rollout_steps % a.max_seq_len == 0 and
                 (a.bptt == "chunked" or a.max_seq_len % 2 == 0),
                 f"algo.max_seq_len={a.max_seq_len}: must divide algo.rollout_steps={a.rollout_steps} "
                 "(and be even for bptt=overlap)")
    cap = RolloutCap.of(c)
    for hp in HPARAMS.values():  # each member's start values; ranges and the rollout cap from the table
        hp.check_start(getattr(a, hp.name), cap)
    _require(a.action_std_init > 0, f"algo.action_std_init={a.action_std_init}: must be positive")
    _require(a.target_kl is None or a.target_kl > 0, f"algo.target_kl={a.target_kl}: must be positive or null")

    _require(len(n.hidden_sizes) >= 1, "net.hidden_sizes: give at least one hidden layer, e.g. [64, 64]")
    _require(len(n.hidden_sizes) <= n.max_layers,
             f"net.hidden_sizes has {len(n.hidden_sizes)} layers but net.max_layers={n.max_layers}: raise net.max_layers")
    for width in n.hidden_sizes:
        _require(n.min_width <= width <= n.max_width,
                 f"net.hidden_sizes contains {width}: widths must lie within "
                 f"[net.min_width={n.min_width}, net.max_width={n.max_width}]")
    _require(n.width_buckets >= 1, f"net.width_buckets={n.width_buckets}: must be at least 1 (1: one padded batch)")
    _require(n.activation in ACTIVATIONS, f"net.activation={n.activation}: choose one of {', '.join(ACTIVATIONS)}")
    _require(n.init in NET_INITS, f"net.init={n.init}: choose one of {', '.join(NET_INITS)}")
    _require(n.recurrent in (None, "lstm", "gru"), f"net.recurrent={n.recurrent}: use null, lstm or gru")
    if n.recurrent:
        _require(1 <= n.hidden_size <= n.max_hidden_size,
                 f"net.hidden_size={n.hidden_size}: must lie within [1, net.max_hidden_size={n.max_hidden_size}]")
        _require(n.rnn_layers >= 1, f"net.rnn_layers={n.rnn_layers}: must be at least 1")
    if n.cnn is not None:
        k = n.cnn
        _require(len(k.channels) >= 1 and len(k.channels) == len(k.kernels) == len(k.strides),
                 "net.cnn: channels, kernels and strides need one entry per conv layer")
        _require(all(v >= 1 for v in [*k.channels, *k.kernels, *k.strides]), "net.cnn: sizes must be positive")

    weights = {key: getattr(m, key) for key in MUTATION_WEIGHTS}
    for key, weight in weights.items():
        _require(weight >= 0, f"mutation.{key}={weight}: mutation weights must not be negative (they are relative "
                              f"weights, normalised to sum to 1): use 0 to switch this kind off")
    _require(sum(weights.values()) > 0,
             f"mutation.{', '.join(MUTATION_WEIGHTS)} are all 0: give at least one a positive weight "
             "(e.g. mutation.no_mutation=1 for selection without mutation)")
    for key in ("new_layer_prob", "remove_prob"):
        value = getattr(m, key)
        _require(0.0 <= value <= 1.0, f"mutation.{key}={value}: must be within [0, 1]")
    _require(m.mutation_sd >= 0, f"mutation.mutation_sd={m.mutation_sd}: must not be negative")
    _require(len(m.node_choices) > 0 and all(k > 0 for k in m.node_choices),
             "mutation.node_choices: give positive node counts, e.g. [16, 32, 64]")
    for act in m.activations:
        _require(act in ACTIVATIONS, f"mutation.activations contains {act}: choose from {', '.join(ACTIVATIONS)}")

    for key, rng in c.hp_config.items():
        lookup(key).check_bounds(rng, getattr(a, key), cap)

    _require(e.evo_steps >= 1, f"evolution.evo_steps={e.evo_steps}: must be at least 1")
    _require(e.selection in ("eval", "train"), f"evolution.selection={e.selection}: use eval or train")
    _require(e.selection_episodes >= 1, f"evolution.selection_episodes={e.selection_episodes}: must be at least 1")
    _require(e.confirm_episodes >= 2, f"evolution.confirm_episodes={e.confirm_episodes}: must be at least 2 "
             "(a standard error needs two episodes; 100 is the default)")
    _require(e.selection_max_steps is None or e.selection_max_steps >= 1,
             f"evolution.selection_max_steps={e.selection_max_steps}: must be positive or null")
    _require(e.selection_max_steps is None or e.selection == "eval",
             f"evolution.selection_max_steps={e.selection_max_steps} cuts selection episodes, which "
             "evolution.selection=train does not play: add evolution.selection_max_steps=null (env=acrobot "
             "sets it), or use evolution.selection=eval")
    _require(e.eval_max_steps is None or e.eval_max_steps >= 1,
             f"evolution.eval_max_steps={e.eval_max_steps}: must be positive or null")
    _require(1 <= e.tournament_size <= c.population.size,
             f"evolution.tournament_size={e.tournament_size}: must be between 1 and population.size={c.population.size}")
    logger_problem = logger_backends.check_options(c.logger)
    _require(logger_problem is None, logger_problem)
    _require(c.checkpoint.keep >= 0, f"checkpoint.keep={c.checkpoint.keep}: must be 0 (off) or positive")


def validate_playback(c: EvalConfig | RenderConfig | InspectConfig | PlotCommandConfig) -> None:
    """Ranges of the `evorl eval` / `render` settings (their types are the schema's)."""
    if isinstance(c, (InspectConfig, PlotCommandConfig)):
        return
    _require(c.member is None or c.member >= 0, f"member={c.member}: give a member index (0, 1, ...) or null")
    _require(c.episodes is None or c.episodes >= 1, f"episodes={c.episodes}: must be at least 1")
    _require(c.max_steps is None or c.max_steps >= 1, f"max_steps={c.max_steps}: must be positive or null")
    _require(c.device in ("auto", "cpu", "cuda") or c.device.startswith("cuda:"),
             f"device={c.device}: use auto, cpu or cuda")
    if isinstance(c, RenderConfig):
        _require(c.fps >= 1, f"fps={c.fps}: must be at least 1 (e.g. fps=30)")
