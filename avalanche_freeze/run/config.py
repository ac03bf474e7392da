"""Experiment configuration: OmegaConf structured configs, one section per component.

The schema is a tree of dataclasses. Each component owns its section and its defaults
(:class:`~avalanche_freeze.plugins.config.LUMPConfig` for LUMP,
:class:`~avalanche_freeze.freezing.config.FreezeConfig` for the freezing rule,
:class:`~avalanche_freeze.strategy.TrainConfig` for the optimiser, ...), and checks its own
ranges in ``__post_init__``; accepted names come from the live registries (SSL methods,
benchmarks, probes). The schema imports no plugin, recipe or logger: checks that read
several sections at once live with the recipes (:func:`~avalanche_freeze.run.recipes.check_config`). Values are merged
in order: defaults, a base mapping, YAML files, then ``key=value`` overrides with dotted
keys (``lump.mem_size=512``), through OmegaConf, which checks every value's type.

======================  ===========================================================
section                 keys
======================  ===========================================================
(top level)             ``strategy``, ``seed``, ``device``, ``num_workers``
``data``                ``benchmark``, ``root``, ``n_experiences``, ``shuffle_classes``, ``max_train_per_task``, ``max_test_per_task``, ``eval_split``, ``task_transforms``
``augment``             ``min_scale``, ``brightness``, ``contrast``, ``saturation``, ``hue``, ``color_jitter_p``, ``grayscale_p``, ``blur_p``, ``backend``
``model``               ``width``
``ssl``                 ``name``, ``proj_dim``, ``pred_dim``, ``options``
``train``               ``epochs``, ``batch_size``, ``lr``, ``momentum``, ``weight_decay``, ``lr_schedule``, ``precision``, ``channels_last``, ``sync_batchnorm``, ``data_on_device``, ``compile``
``eval``                ``probes``, ``knn_k``, ``knn_temperature``, ``linear_probe_epochs``, ``mb_size``
``lump``                ``mem_size``, ``alpha``
``freeze``              ``measure``, ``tau``, ``stability``, ``decide_every``, ``max_frozen_share``, ``first_task``, ``granularity``, ``n_samples``, ``energy``, ``representation``, ``center``, ``warmup_epochs``, ``normalize``, ``score``, ``shrink``, ``schedule``
``si``, ``der``,        the baselines' options
``cassle``, ``pfr``,
``ewc``
``supervised``          ``lr``, ``mem_size``, ``ewc_lambda``, ``lwf_alpha``, ``lwf_temperature``, ``der_alpha``, ``der_beta``, ``augment`` (Avalanche's supervised strategies)
``health``              ``on_nan``, ``collapse_std``, ``check_every``
``metrics``             ``flops_every``
``wandb``               ``enabled``, ``project``
======================  ===========================================================


The flat keys of release 0.1 (``lump_mem_size``, ``freeze_tau``, ``epochs``, ...) are still
read, with a ``FutureWarning`` naming the new key; they will be removed in the next release.

Example:
    >>> cfg = ExperimentConfig.from_sources(overrides=["train.epochs=2", "ssl.name=barlowtwins"])
    >>> cfg.train.epochs, cfg.ssl.name, cfg.lump.mem_size
    (2, 'barlowtwins', 256)
"""

from __future__ import annotations

import dataclasses
import functools
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..augmentations import AugmentConfig
from ..backbones import ModelConfig
from ..benchmarks import DataConfig
from ..efficiency import MetricsConfig
from ..evaluation import EvalConfig
from ..freezing.config import FreezeConfig
from ..health import HealthConfig
from ..plugins.config import CaSSLeConfig, DERConfig, EWCConfig, LUMPConfig, PFRConfig, SIConfig
from ..ssl.base import SSLConfig, recommended_lr
from ..strategy import TrainConfig
from ..validation import ConfigError, check_number, not_accepted
from .solo_config import is_solo_config
from .solo_config import translate as translate_solo
from .supervised import SupervisedConfig

__all__ = ["DEPRECATED_KEYS", "ExperimentConfig", "WandBConfig", "flatten", "load_yaml"]

#: Flat keys of release 0.1 and the dotted keys that replace them.
DEPRECATED_KEYS: Dict[str, str] = {
    "benchmark": "data.benchmark", "data_root": "data.root", "n_experiences": "data.n_experiences",
    "shuffle_classes": "data.shuffle_classes", "max_train_per_task": "data.max_train_per_task",
    "max_test_per_task": "data.max_test_per_task", "width": "model.width",
    "ssl": "ssl.name", "proj_dim": "ssl.proj_dim", "pred_dim": "ssl.pred_dim",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr", "momentum": "train.momentum",
    "weight_decay": "train.weight_decay", "lr_schedule": "train.lr_schedule",
    "probes": "eval.probes", "knn_k": "eval.knn_k", "knn_temperature": "eval.knn_temperature",
    "linear_probe_epochs": "eval.linear_probe_epochs", "eval_mb_size": "eval.mb_size",
    "lump_mem_size": "lump.mem_size", "lump_alpha": "lump.alpha", "si_c": "si.c", "si_xi": "si.xi",
    "der_mem_size": "der.mem_size", "der_alpha": "der.alpha", "cassle_lambda": "cassle.lam",
    "ewc_lambda": "ewc.ewc_lambda", "freeze_measure": "freeze.measure", "freeze_tau": "freeze.tau",
    "freeze_max_share": "freeze.max_frozen_share", "freeze_granularity": "freeze.granularity",
    "freeze_samples": "freeze.n_samples", "freeze_energy": "freeze.energy",
    "freeze_warmup_epochs": "freeze.warmup_epochs", "flops_every": "metrics.flops_every",
    "on_nan": "health.on_nan", "collapse_std": "health.collapse_std", "wandb": "wandb.enabled",
    "wandb_project": "wandb.project",
}


@dataclass
class WandBConfig:
    """The ``wandb`` configuration section (:mod:`~avalanche_freeze.run.wandb_logging`).

    Attributes:
        enabled: log the run to Weights & Biases (offline unless logged in; the CLI's ``--wandb``).
        project: the W&B project ("avalanche-freeze").
        init_timeout: seconds to wait for W&B's server before logging offline instead (60).
    """

    enabled: bool = False
    project: str = "avalanche-freeze"
    init_timeout: float = 60.0

    def __post_init__(self) -> None:
        check_number("init_timeout", self.init_timeout, above=0)


@dataclass
class ExperimentConfig:
    """All options of one experiment (defaults: a quick SimSiam + LUMP run on the embedded benchmark).

    The schema checks each section on its own; what depends on the strategy (its name is a
    registered one, sections that must agree with it) is checked by
    :func:`~avalanche_freeze.run.recipes.check_config`, which the command line, grids and
    :meth:`~avalanche_freeze.run.experiment.ExperimentRun.build` call before anything runs.

    Attributes:
        strategy: the strategy recipe (:func:`~avalanche_freeze.run.recipes.available_strategies`).
        seed: seed of everything random in the run (0).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        num_workers: dataloader workers (0).
        data, augment, model, ssl, train, eval, lump, freeze, si, der, cassle, pfr, ewc, supervised,
            health, metrics,
            wandb: the components' sections (see the module docs).
    """

    strategy: str = "lump"
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lump: LUMPConfig = field(default_factory=LUMPConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    si: SIConfig = field(default_factory=SIConfig)
    der: DERConfig = field(default_factory=DERConfig)
    cassle: CaSSLeConfig = field(default_factory=CaSSLeConfig)
    pfr: PFRConfig = field(default_factory=PFRConfig)
    ewc: EWCConfig = field(default_factory=EWCConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    wandb: WandBConfig = field(default_factory=WandBConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, str) or not self.strategy:
            raise not_accepted("strategy", self.strategy, "a strategy name (avalanche-freeze list)")
        check_number("seed", self.seed, at_least=0, at_most=2**32 - 1, integer=True)
        check_number("num_workers", self.num_workers, at_least=0, integer=True)
        if not (self.device in ("cpu", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise not_accepted("device", self.device, "cpu, cuda, cuda:N")
        if self.train.lr is None:  # the SSL method's rate, written down: a saved config names the rate it ran at
            self.train.lr = recommended_lr(self.ssl.name)

    # ------------------------------------------------------------ building
    @classmethod
    def keys(cls) -> List[str]:
        """Every accepted key, dotted (``lump.mem_size``)."""
        return list(_field_types(cls))

    @classmethod
    def from_dict(cls, values: Dict[str, Any], *, source: str = "config") -> "ExperimentConfig":
        """A checked configuration from a (nested or dotted-key) mapping over the defaults."""
        return cls.from_sources(base=values, base_source=source)

    @classmethod
    def from_sources(
        cls, *, files: Sequence[Path] = (), overrides: Sequence[str] = (), base: Optional[Dict[str, Any]] = None,
        base_source: str = "configuration",
    ) -> "ExperimentConfig":
        """Defaults, then ``base``, then each YAML file in order, then ``key=value`` overrides.

        Raises:
            ConfigError: a missing or malformed file, an unknown key or a bad value (the
                message names the key, the value and what is accepted).
        """
        conf = OmegaConf.structured(cls)
        if base:
            conf = _merge(conf, base, base_source)
        for path in files:
            raw, source = load_yaml(Path(path)), f"config file {str(path)!r}"
            if is_solo_config(raw):  # a solo-learn pretraining file: its method section, mapped
                raw = translate_solo(raw, source)
            conf = _merge(conf, raw, source)
        for item in overrides:
            conf = _merge(conf, _parse_override(item), "--set")
        return _instantiate(cls, conf)

    def to_dict(self) -> Dict[str, Any]:
        """The configuration as a nested dict (JSON and YAML friendly)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The configuration as a YAML document (loadable with ``--config``)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def flatten(values: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A nested dict as ``{dotted.key: value}`` (dicts of free options stay values)."""
    out: Dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "options":
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---------------------------------------------------------------- internals
@functools.lru_cache(maxsize=None)
def _field_types(cls: type, prefix: str = "") -> Dict[str, Any]:
    """``{dotted key: type}`` of every leaf of a dataclass schema."""
    out: Dict[str, Any] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            out.update(_field_types(hint, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = hint
    return out


def _describe(hint: Any) -> str:
    """What a value of type ``hint`` looks like, for error messages."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        return _describe(next(a for a in args if a is not type(None))) + " or null"
    if typing.get_origin(hint) in (list, List):
        inner = (typing.get_args(hint) or (str,))[0]
        return "a list of lists of integers" if typing.get_origin(inner) in (list, List) else "a list of names"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, "a mapping")


def _undeprecate(values: Dict[str, Any], source: str) -> Dict[str, Any]:
    """Translate flat 0.1 keys (and dotted keys) of a mapping into nested sections."""
    nested: Dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ConfigError(f"{source}: keys must be strings; got {key!r}")
        if key in DEPRECATED_KEYS and not isinstance(value, dict):
            new = DEPRECATED_KEYS[key]
            warnings.warn(f"{source}: config key {key!r} is deprecated; use {new!r} (flat keys will be removed "
                          "in the next release)", FutureWarning, stacklevel=4)
            key = new
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: {key!r} sets a key inside {part!r}, which holds a value")
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return nested


def _merge(conf: DictConfig, values: Dict[str, Any], source: str) -> DictConfig:
    if not isinstance(values, dict):
        raise ConfigError(f"{source} must be a mapping of key: value; got {type(values).__name__}")
    nested = _undeprecate(values, source)
    types = _field_types(ExperimentConfig)
    for key, value in flatten(nested).items():
        if key in types:
            hint = types[key]
            if typing.get_origin(hint) in (list, List) and isinstance(value, str):  # "knn,linear"
                _set(nested, key, [v.strip() for v in value.split(",") if v.strip()])
            elif hint is float and isinstance(value, str):  # YAML 1.1 reads "1e30" or "3e-2" as strings
                try:
                    _set(nested, key, float(value))
                except ValueError:
                    pass
        elif "." not in key and any(k.startswith(key + ".") for k in types):
            raise not_accepted(key, value, f"a mapping of {key}.* keys")
        else:
            raise ConfigError(f"{source}: unknown key {key!r}; accepted keys: {', '.join(types)}", key=key)
    try:  # every key is known by now: what OmegaConf refuses is a value of the wrong type
        return OmegaConf.merge(conf, nested)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = str(exc.full_key).split("[")[0]  # "freeze.schedule[0]" -> the list's key
        value = _get(nested, key)
        raise not_accepted(key, value, _describe(types.get(key))) from None


def _set(nested: Dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        nested = nested[part]
    nested[leaf] = value


def _get(nested: Dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(nested, dict) or part not in nested:
            return None
        nested = nested[part]
    return nested


def _parse_override(item: str) -> Dict[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {_yaml_problem(exc)}", key=key) from None
    return {key: value}


def _instantiate(cls: type, conf: DictConfig) -> "ExperimentConfig":
    """The dataclass tree of ``conf``; each section checks itself, errors name the dotted key."""
    sections = {}
    for f in dataclasses.fields(cls):
        node = conf[f.name]
        if isinstance(node, DictConfig):
            try:
                sections[f.name] = OmegaConf.to_object(node)
            except ConfigError as exc:
                raise exc.within(f.name) from None
        else:
            sections[f.name] = list(node) if isinstance(node, ListConfig) else node
    return cls(**sections)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    return problem + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else "")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, (yaml.SequenceNode, yaml.MappingNode)):
                kind = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
                raise yaml.constructor.ConstructorError(None, None, f"a mapping key must be a name or a number; "
                                                        f"got {kind}", key_node.start_mark)
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> Dict[str, Any]:
    """Read a YAML mapping (raises :class:`ConfigError` on a missing or malformed file)."""
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory; pass a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must contain a mapping of key: value; got {type(data).__name__}")
    return data
