"""solo-learn's self-supervised methods as methods of this package (``ssl.name=solo:byol``, ...).

`solo-learn <https://github.com/vturrisi/solo-learn>`_'s only release on PyPI (1.0.2) pins
torch 1.9 and PyTorch Lightning 1.4, so it is installed without its dependencies
(``make setup-solo``: ``pip install --no-deps solo-learn==1.0.2`` plus ``timm`` and ``einops``,
which it imports). Its package imports ``pl_bolts`` (lightning-bolts) for one learning-rate
scheduler; lightning-bolts does not import next to Lightning 2, so :func:`import_solo` registers
a small ``pl_bolts.optimizers.lr_scheduler`` module providing that scheduler
(:class:`LinearWarmupCosineAnnealingLR`, written here) when the real one cannot be imported.
solo-learn's own code is not changed.

For each adapted method solo-learn **builds the heads and provides the loss**: the method's
LightningModule is constructed with its own hyperparameters, with a stand-in in place of the
ResNet it would build (this package's backbone is the one trained, so no second network is
made); its projector / predictor / DINO head are then used on the backbone's features, and its
loss functions (``solo.losses``) compute the loss. Momentum methods (BYOL, DINO, MoCo v2+) keep a
momentum copy of the backbone and update it, with their momentum heads, through solo-learn's
``MomentumUpdater`` after every step; MoCo v2+ fills its queue with solo-learn's
``_dequeue_and_enqueue`` (when the batch does not divide ``queue_size``, which solo-learn
asserts, the keys wrap around the queue's end instead).

Adapted (:data:`SOLO_METHODS`): ``solo:simsiam``, ``solo:byol``, ``solo:barlowtwins``,
``solo:vicreg``, ``solo:simclr``, ``solo:dino``, ``solo:mocov2plus`` (MoCo v2+, with its queue of
momentum keys). solo-learn 1.0.2 has no MoCo v3 (its main branch has, but it is not on PyPI).

Differences from solo-learn's training loop, which this package's strategy replaces: the
momentum coefficient stays at ``base_tau_momentum`` (solo-learn anneals it to
``final_tau_momentum`` over a run's known number of steps, which a stream of tasks does not
declare), DINO's teacher temperature is constant (``teacher_temperature``; no warm-up epochs),
DINO's prototype layer is not held fixed during the first epoch, and solo-learn's online
linear classifier (trained on labels) is not used.

Example:
    >>> from avalanche_freeze.ssl import available_ssl_methods
    >>> ("solo:byol" in available_ssl_methods()) == solo_available()
    True
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import importlib.util
import inspect
import math
import sys
import types
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import ConfigError, check_like_default, not_accepted
from .base import SSLMethod, SSLOutput, register_ssl_method

__all__ = ["LinearWarmupCosineAnnealingLR", "SOLO_METHODS", "SOLO_RECOMMENDED_LR", "SoloMethod", "import_solo", "solo_available"]

#: solo-learn's options of each adapted method, with solo-learn's defaults (``proj_dim`` and
#: ``pred_dim`` of the ``ssl`` section set the hidden widths of the projector and predictor).
SOLO_METHODS: Dict[str, Dict[str, Any]] = {
    "simsiam": {"proj_output_dim": 128},
    "byol": {"proj_output_dim": 256, "base_tau_momentum": 0.99},
    "barlowtwins": {"proj_output_dim": 2048, "lamb": 0.0051, "scale_loss": 0.024},
    "vicreg": {"proj_output_dim": 2048, "sim_loss_weight": 25.0, "var_loss_weight": 25.0, "cov_loss_weight": 1.0},
    "simclr": {"proj_output_dim": 128, "temperature": 0.1},
    "dino": {"proj_output_dim": 256, "num_prototypes": 4096, "use_bn_in_head": False, "norm_last_layer": True,
             "student_temperature": 0.1, "teacher_temperature": 0.07, "base_tau_momentum": 0.99},
    "mocov2plus": {"proj_output_dim": 128, "temperature": 0.1, "queue_size": 65536, "base_tau_momentum": 0.99},
}
#: ``train.lr`` of the adapted methods that need a rate of their own (the others take
#: ``DEFAULT_LR``), chosen on the validation split with ``experiments/ssl_lr.py`` (docs/methods/ssl.md):
#: VICReg's 25x-weighted terms diverged at 0.06 on seed 2 of 0-4; 0.045 and 0.03 trained every seed,
#: 0.03 with the higher mean validation kNN accuracy.
SOLO_RECOMMENDED_LR: Dict[str, float] = {"vicreg": 0.03}

_CLASSES = {"simsiam": "SimSiam", "byol": "BYOL", "barlowtwins": "BarlowTwins", "vicreg": "VICReg",
            "simclr": "SimCLR", "dino": "DINO", "mocov2plus": "MoCoV2Plus"}
_MOMENTUM = ("byol", "dino", "mocov2plus")


def solo_available() -> bool:
    """Whether solo-learn is installed (``make setup-solo``)."""
    return importlib.util.find_spec("solo") is not None


class LinearWarmupCosineAnnealingLR(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up from ``warmup_start_lr`` to each group's lr over ``warmup_epochs``, then cosine
    annealing to ``eta_min`` at ``max_epochs`` (the scheduler solo-learn imports from lightning-bolts,
    with its signature).

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = LinearWarmupCosineAnnealingLR(opt, warmup_epochs=2, max_epochs=4)
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(round(opt.param_groups[0]["lr"], 3))
        ...     opt.step()
        ...     sched.step()
        >>> lrs
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_epochs: int, max_epochs: int,
                 warmup_start_lr: float = 0.0, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        def factor(base_lr: float) -> Callable[[int], float]:
            def f(epoch: int) -> float:
                if epoch < warmup_epochs:
                    return (warmup_start_lr + epoch * (base_lr - warmup_start_lr) / warmup_epochs) / base_lr
                span = max(1, max_epochs - warmup_epochs)
                progress = min(1.0, (epoch - warmup_epochs) / span)
                return (eta_min + 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * progress))) / base_lr
            return f

        super().__init__(optimizer, [factor(g["lr"]) for g in optimizer.param_groups], last_epoch)


def _register_pl_bolts_scheduler() -> None:
    """Make ``from pl_bolts.optimizers.lr_scheduler import LinearWarmupCosineAnnealingLR`` work."""
    try:
        importlib.import_module("pl_bolts.optimizers.lr_scheduler")
        return
    except Exception:  # absent, or lightning-bolts failing to import next to Lightning 2
        for name in [m for m in sys.modules if m == "pl_bolts" or m.startswith("pl_bolts.")]:
            del sys.modules[name]
    for name in ("pl_bolts", "pl_bolts.optimizers", "pl_bolts.optimizers.lr_scheduler"):
        module = types.ModuleType(name, "registered by avalanche_freeze.ssl.solo for solo-learn")
        module.__path__ = []  # a package
        sys.modules[name] = module
    sys.modules["pl_bolts.optimizers.lr_scheduler"].LinearWarmupCosineAnnealingLR = LinearWarmupCosineAnnealingLR


def import_solo() -> types.ModuleType:
    """``solo`` (its methods and losses imported), with the scheduler module it needs registered.

    Raises:
        ConfigError: solo-learn is not installed (the message says how to install it).
    """
    if not solo_available():
        raise ConfigError("solo-learn is not installed; install it with `make setup-solo` (pip install --no-deps "
                          "solo-learn==1.0.2, then pip install timm einops)")
    _register_pl_bolts_scheduler()
    import solo.losses  # noqa: F401
    import solo.methods  # noqa: F401

    return sys.modules["solo"]


@functools.lru_cache(maxsize=1)
def _losses() -> types.ModuleType:
    """``solo.losses`` (imported once)."""
    return import_solo().losses


class _EncoderStandIn(nn.Module):
    """Takes the place of the ResNet solo-learn builds: it only reports the feature width, so the
    heads are sized for this package's backbone; it has no parameters and is removed afterwards."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.inplanes = feature_dim
        self.fc = nn.Identity()


@contextlib.contextmanager
def _encoder_stand_in(feature_dim: int):
    import torchvision.models

    original = torchvision.models.resnet18
    torchvision.models.resnet18 = lambda **kwargs: _EncoderStandIn(feature_dim)
    try:
        yield
    finally:
        torchvision.models.resnet18 = original


def _build_solo_module(method: str, *, feature_dim: int, proj_dim: int, pred_dim: int,
                       options: Dict[str, Any]) -> nn.Module:
    solo = import_solo()
    common = dict(encoder="resnet18", num_classes=2, backbone_args={"cifar": False}, max_epochs=1, batch_size=2,
                  optimizer="sgd", lars=False, lr=0.1, weight_decay=0.0, classifier_lr=0.1,
                  exclude_bias_n_norm=False, accumulate_grad_batches=1, extra_optimizer_args={}, scheduler="none",
                  min_lr=0.0, warmup_start_lr=0.0, warmup_epochs=0, num_large_crops=2, num_small_crops=0)
    specific = dict(options, proj_hidden_dim=proj_dim)
    if method in ("simsiam", "byol"):
        specific["pred_hidden_dim"] = pred_dim
    if method in _MOMENTUM:
        specific.update(final_tau_momentum=options["base_tau_momentum"], momentum_classifier=False)
    if method == "dino":
        specific.update(clip_grad=0.0, freeze_last_layer=0, warmup_teacher_temperature=options["teacher_temperature"],
                        warmup_teacher_temperature_epochs=0)
    if method == "simclr":
        specific["supervised"] = False
    with _encoder_stand_in(feature_dim):
        module = getattr(solo.methods, _CLASSES[method])(**common, **specific)
    for part in ("encoder", "momentum_encoder", "classifier", "momentum_classifier", "knn"):
        if hasattr(module, part):
            delattr(module, part)
    return module


class _SoloPairLoss(nn.Module):
    """The solo-learn loss function of a method between two batches of projections, as a module
    (plain settings only, so the method can be deep-copied, as CaSSLe does)."""

    def __init__(self, method: str, settings: Dict[str, Any]) -> None:
        super().__init__()
        self.method = method
        self.settings = dict(settings)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        L, o = _losses(), self.settings
        if self.method == "simsiam":
            return L.simsiam_loss_func(a, b)
        if self.method == "byol":
            return L.byol_loss_func(a, b)
        if self.method == "barlowtwins":
            return L.barlow_loss_func(a, b, lamb=o["lamb"], scale_loss=o["scale_loss"])
        if self.method == "vicreg":
            return L.vicreg_loss_func(a, b, sim_loss_weight=o["sim_loss_weight"], var_loss_weight=o["var_loss_weight"],
                                      cov_loss_weight=o["cov_loss_weight"])
        if self.method == "simclr":
            return L.simclr_loss_func(a, b, temperature=o["temperature"])
        raise ConfigError(f"solo:{self.method} has no loss between two batches of projections (its loss keeps "
                          "state across calls); accepted with cassle: the other solo methods")


class SoloMethod(SSLMethod):
    """A solo-learn method's heads and loss around this package's backbone.

    Args:
        method: one of :data:`SOLO_METHODS`.
        feature_dim: the backbone's feature width.
        backbone: the backbone (momentum methods copy it into their momentum encoder).
        proj_dim: hidden width of the projector (solo-learn's ``proj_hidden_dim``).
        pred_dim: hidden width of the predictor (SimSiam, BYOL: ``pred_hidden_dim``).
        options: solo-learn's options of the method (defaults in :data:`SOLO_METHODS`).

    Example:
        >>> import torch
        >>> from avalanche_freeze.backbones import CifarResNet18
        >>> net = CifarResNet18(width=0.125, in_channels=1)
        >>> m = SoloMethod("barlowtwins", feature_dim=net.feature_dim, backbone=net, proj_dim=32,
        ...                options={"proj_output_dim": 16})  # doctest: +SKIP
        >>> m(net, torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)).loss.shape  # doctest: +SKIP
        torch.Size([])
    """

    #: not under torchrun: solo-learn's losses reduce across processes themselves, outside autograd
    supports_distributed = False

    def __init__(self, method: str, *, feature_dim: int, backbone: Optional[nn.Module] = None, proj_dim: int = 2048,
                 pred_dim: int = 512, options: Optional[Dict[str, Any]] = None) -> None:
        if method not in SOLO_METHODS:
            raise not_accepted("ssl", f"solo:{method}", ", ".join(f"solo:{m}" for m in SOLO_METHODS))
        unknown = sorted(set(options or {}) - set(SOLO_METHODS[method]))
        if unknown:
            raise not_accepted(f"options.{unknown[0]}", (options or {})[unknown[0]],
                               f"options of solo:{method}: {', '.join(SOLO_METHODS[method])}")
        for option, value in (options or {}).items():
            check_like_default(f"options.{option}", value, SOLO_METHODS[method][option])
        settings = {**SOLO_METHODS[method], **(options or {})}
        super().__init__(feature_dim=feature_dim, projection_dim=int(settings["proj_output_dim"]))
        self.method = method
        self.name = f"solo:{method}"
        self.solo = _build_solo_module(method, feature_dim=feature_dim, proj_dim=proj_dim, pred_dim=pred_dim,
                                       options=settings)
        self.projector = self.solo.head if method == "dino" else self.solo.projector
        self.criterion = _SoloPairLoss(method, settings)  # DINO's and MoCo v2+'s refuse: their losses keep state
        self.target_backbone: Optional[nn.Module] = None
        if method in _MOMENTUM:
            if backbone is None:
                raise ValueError(f"solo:{method} needs the backbone (backbone=...) to build its momentum encoder")
            self.target_backbone = copy.deepcopy(backbone)
            for p in self.target_backbone.parameters():
                p.requires_grad = False

    @property
    def recommended_lr(self) -> Optional[float]:  # type: ignore[override]
        """The method's own ``train.lr`` (:data:`SOLO_RECOMMENDED_LR`); None: the shared default."""
        return SOLO_RECOMMENDED_LR.get(self.method)

    def loss_from_features(self, f1, f2, *, view1, view2) -> SSLOutput:
        s, L = self.solo, _losses()
        if self.method == "dino":
            p1, p2 = s.head(f1), s.head(f2)
            with torch.no_grad():
                t1, t2 = s.momentum_head(self.target_backbone(view1)), s.momentum_head(self.target_backbone(view2))
            with torch.autocast(device_type=p1.device.type, enabled=False):
                loss = s.dino_loss_func(torch.cat((p1, p2)).float(), torch.cat((t1, t2)).float())
            return SSLOutput(loss=loss, features=(f1, f2), projections=(p1, p2))
        z1, z2 = s.projector(f1), s.projector(f2)
        if self.method == "mocov2plus":
            q1, q2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
            with torch.no_grad():
                k1 = F.normalize(s.momentum_projector(self.target_backbone(view1)), dim=-1)
                k2 = F.normalize(s.momentum_projector(self.target_backbone(view2)), dim=-1)
            queue = s.queue.clone().detach()
            with torch.autocast(device_type=q1.device.type, enabled=False):
                loss = 0.5 * (L.moco_loss_func(q1.float(), k2.float(), queue[1], s.temperature)
                              + L.moco_loss_func(q2.float(), k1.float(), queue[0], s.temperature))
            self._enqueue(torch.stack((k1, k2)).to(queue.dtype))
            return SSLOutput(loss=loss, features=(f1, f2), projections=(z1, z2))
        if self.method == "simsiam":
            p1, p2 = s.predictor(z1), s.predictor(z2)
            loss = 0.5 * (self.ssl_loss(p1, z2) + self.ssl_loss(p2, z1))
        elif self.method == "byol":
            p1, p2 = s.predictor(z1), s.predictor(z2)
            with torch.no_grad():
                m1 = s.momentum_projector(self.target_backbone(view1))
                m2 = s.momentum_projector(self.target_backbone(view2))
            loss = self.ssl_loss(p2, m1) + self.ssl_loss(p1, m2)  # solo-learn sums over the ordered view pairs
        else:
            loss = self.ssl_loss(z1, z2)
        return SSLOutput(loss=loss, features=(f1, f2), projections=(z1, z2))

    @torch.no_grad()
    def _enqueue(self, keys: Tensor) -> None:
        """MoCo v2+: ``keys`` ``[2, B, D]`` into the queue, first in first out."""
        s, n = self.solo, keys.shape[1]
        if s.queue_size % n == 0:
            s._dequeue_and_enqueue(keys)
            return
        ptr = int(s.queue_ptr)
        slots = (ptr + torch.arange(n, device=keys.device)) % s.queue_size
        s.queue[:, :, slots] = keys.permute(0, 2, 1)
        s.queue_ptr[0] = (ptr + n) % s.queue_size

    @torch.no_grad()
    def after_update(self, backbone: nn.Module) -> None:
        if self.target_backbone is None:
            return
        self.solo.momentum_updater.update(backbone, self.target_backbone)
        online, momentum = ("head", "momentum_head") if self.method == "dino" else ("projector", "momentum_projector")
        self.solo.momentum_updater.update(getattr(self.solo, online), getattr(self.solo, momentum))


def _factory(method: str) -> Callable[..., SSLMethod]:
    def build(*, feature_dim: int, backbone: Optional[nn.Module] = None, proj_dim: int = 2048, pred_dim: int = 512,
              **options) -> SSLMethod:
        return SoloMethod(method, feature_dim=feature_dim, backbone=backbone, proj_dim=proj_dim, pred_dim=pred_dim,
                          options=options)

    # the signature names the accepted options, so the configuration checks them before a run
    params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
              for n in ("feature_dim", "backbone", "proj_dim", "pred_dim", *SOLO_METHODS[method])]
    build.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    build.__doc__ = f"solo-learn's {_CLASSES[method]} (options: {', '.join(SOLO_METHODS[method])})."
    build.recommended_lr = SOLO_RECOMMENDED_LR.get(method)  # type: ignore[attr-defined]
    return build


def register_solo_methods() -> None:
    """Register ``solo:NAME`` for every adapted method (called on import when solo-learn is installed;
    solo-learn itself is imported only when a method is built)."""
    for method in SOLO_METHODS:
        register_ssl_method(f"solo:{method}", _factory(method))


if solo_available():
    register_solo_methods()
