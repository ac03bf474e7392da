"""Experiment configuration: defaults, YAML files, ``--set key=value`` overrides, validation.

Every key is validated up front; an error names the key, the bad value and what
is accepted. The key names are public (scripts and recipes rely on them).

Example:
    >>> cfg = ExperimentConfig.from_sources(overrides=["epochs=2", "ssl=barlowtwins"])
    >>> cfg.epochs, cfg.ssl
    (2, 'barlowtwins')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

__all__ = ["ConfigError", "ExperimentConfig"]

_CHOICES: Dict[str, Sequence[Any]] = {
    "benchmark": ("fmnist", "cifar10", "cifar100", "tinyimagenet"),
    "ssl": ("simsiam", "barlowtwins", "simclr", "byol", "vicreg"),
    "strategy": None,  # the recipe registry, checked in validate()
    "lr_schedule": ("none", "cosine"),
    "freeze_measure": ("subspace", "cka"),
    "freeze_granularity": ("block", "stage"),
    "on_nan": ("stop", "warn"),
    "device": None,  # validated separately
}
_PROBES = ("knn", "linear")


class ConfigError(ValueError):
    """A configuration key or value is not accepted."""


@dataclass
class ExperimentConfig:
    """All options of one experiment (defaults: a quick SimSiam run on the embedded benchmark)."""

    benchmark: str = "fmnist"
    data_root: Optional[str] = None
    n_experiences: Optional[int] = None
    shuffle_classes: bool = False
    max_train_per_task: Optional[int] = 2000
    max_test_per_task: Optional[int] = 1000
    ssl: str = "simsiam"
    strategy: str = "lump"
    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.06
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"
    width: float = 0.25
    proj_dim: int = 512
    pred_dim: int = 128
    knn_k: int = 200
    knn_temperature: float = 0.1
    probes: List[str] = field(default_factory=lambda: ["knn"])
    linear_probe_epochs: int = 50
    eval_mb_size: int = 512
    lump_mem_size: int = 256
    lump_alpha: float = 0.4
    si_c: float = 1.0
    si_xi: float = 1.0
    der_mem_size: int = 256
    der_alpha: float = 0.4
    cassle_lambda: float = 1.0
    ewc_lambda: float = 100.0
    freeze_measure: str = "subspace"
    freeze_tau: float = 0.9
    freeze_max_share: float = 1.0
    freeze_granularity: str = "block"
    freeze_samples: int = 256
    freeze_energy: float = 0.97
    freeze_warmup_epochs: int = 1
    flops_every: int = 1
    on_nan: str = "stop"
    collapse_std: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    wandb: bool = False
    wandb_project: str = "avalanche-freeze"

    # ------------------------------------------------------------ building
    @classmethod
    def keys(cls) -> List[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Dict[str, Any], *, source: str = "config") -> "ExperimentConfig":
        if not isinstance(values, dict):
            raise ConfigError(f"{source} must be a mapping of key: value; got {type(values).__name__}")
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(map(repr, unknown))} in {source}; accepted keys: {', '.join(cls.keys())}")
        cfg = cls()
        for k, v in values.items():
            setattr(cfg, k, v)
        cfg.validate()
        return cfg

    @classmethod
    def from_sources(
        cls, *, files: Sequence[Path] = (), overrides: Sequence[str] = (), base: Optional[Dict[str, Any]] = None
    ) -> "ExperimentConfig":
        """Defaults, then ``base``, then each YAML file in order, then ``key=value`` overrides."""
        values: Dict[str, Any] = dict(base or {})
        for path in files:
            values.update(load_yaml(Path(path)))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"--set {item!r} is not of the form key=value")
            key, raw = item.split("=", 1)
            key = key.strip()
            if key not in cls.keys():
                raise ConfigError(f"--set: unknown key {key!r}; accepted keys: {', '.join(cls.keys())}")
            try:
                values[key] = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError as exc:
                raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
        return cls.from_dict(values, source="configuration")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    # ---------------------------------------------------------- validation
    def validate(self) -> None:
        """Check every value's type and range (raises :class:`ConfigError`)."""
        hints = {f.name: f for f in dataclasses.fields(self)}
        for name, f in hints.items():
            value = getattr(self, name)
            setattr(self, name, _coerce(name, str(f.type), value))
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if choices is not None and value not in choices:
                raise ConfigError(f"{name}={value!r} is not accepted; accepted: {', '.join(map(str, choices))}")
        from .recipes import available_strategies

        if self.strategy not in available_strategies():
            raise ConfigError(f"strategy={self.strategy!r} is not accepted; accepted: {', '.join(available_strategies())}")
        bad = [p for p in self.probes if p not in _PROBES]
        if bad or not self.probes:
            raise ConfigError(f"probes={self.probes!r} is not accepted; accepted: a non-empty list of {', '.join(_PROBES)}")
        positive = ("epochs", "knn_k", "proj_dim", "pred_dim", "eval_mb_size", "linear_probe_epochs",
                    "freeze_samples", "flops_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not accepted; accepted: an integer >= 1")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size={self.batch_size!r} is not accepted; accepted: an integer >= 2")
        for name in ("max_train_per_task", "max_test_per_task", "n_experiences"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name}={v!r} is not accepted; accepted: an integer >= 1 or null")
        for name in ("lr", "width", "knn_temperature", "lump_alpha", "si_xi"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not accepted; accepted: a number > 0")
        for name in ("momentum", "freeze_tau", "freeze_max_share", "freeze_energy"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ConfigError(f"{name}={v!r} is not accepted; accepted: a number in [0, 1]")
        for name in ("weight_decay", "lump_mem_size", "freeze_warmup_epochs", "num_workers", "seed", "collapse_std",
                     "si_c", "der_mem_size", "der_alpha", "cassle_lambda", "ewc_lambda"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not accepted; accepted: a number >= 0")
        if self.device != "cpu" and not (self.device == "cuda" or self.device.startswith("cuda:")):
            raise ConfigError(f"device={self.device!r} is not accepted; accepted: cpu, cuda, cuda:N")
        if self.data_root is not None and not Path(self.data_root).is_dir():
            raise ConfigError(f"data_root={self.data_root!r} is not an existing directory")


def _coerce(name: str, type_name: str, value: Any) -> Any:
    optional = "Optional" in type_name
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name}=null is not accepted; accepted: a value of type {type_name}")
    if "bool" in type_name:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}={value!r} is not accepted; accepted: true or false")
    if "List" in type_name:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}={value!r} is not accepted; accepted: a list of names")
        return value
    if isinstance(value, str) and ("int" in type_name or "float" in type_name):
        try:  # YAML 1.1 reads "1e30" or "3e-2" as strings
            value = float(value) if "float" in type_name else int(value)
        except ValueError:
            pass
    if "int" in type_name:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name}={value!r} is not accepted; accepted: an integer")
        return value
    if "float" in type_name:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}={value!r} is not accepted; accepted: a number")
        return float(value)
    if "str" in type_name:
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r} is not accepted; accepted: a string")
        return value
    return value


def load_yaml(path: Path) -> Dict[str, Any]:
    """Read a YAML mapping (raises :class:`ConfigError` on a missing or malformed file)."""
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must contain a mapping of key: value; got {type(data).__name__}")
    return data
