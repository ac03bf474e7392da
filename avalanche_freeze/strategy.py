"""The self-supervised continual-learning strategy, as an Avalanche training template.

:class:`SelfSupervisedStrategy` trains a backbone with a self-supervised loss on
two augmented views of each image and never reads the labels while training.
At evaluation it turns the backbone into a classifier with a probe (kNN by
default) fitted on the training data of the experiences seen so far, so that
Avalanche's stock accuracy, forgetting and BWT metrics, its loggers and the
project's own probe metrics all work unchanged.

The template is composed the way Avalanche composes its own: the *problem* mixin
:class:`SelfSupervisedProblem` says what a minibatch, a forward pass and a loss are
(two views and the SSL loss while training; features and the probe's scores at
evaluation), while Avalanche's observation and update mixins (``BatchObservation``,
``SGDUpdate``) run the loop. Probes, their banks and caches live in a
:class:`~avalanche_freeze.evaluation.ProbeEvaluator`.

Data flow of one training iteration (attributes plugins may read or replace are those of
:class:`~avalanche_freeze.protocols.SelfSupervisedState`)::

    mb_x (raw images) -> augmentation -> mb_views (view1, view2)    [_unpack_minibatch]
    before_forward plugins (e.g. LUMP mixes mb_views with its buffer)
    model.ssl(backbone, *mb_views) -> ssl_output (loss, features, projections)
    criterion() = ssl_output.loss; before_backward plugins may add terms to strategy.loss
    backward, optimizer step, ssl.after_update (momentum encoders), after_update plugins
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from avalanche.evaluation.metrics import timing_metrics
from avalanche.logging import InteractiveLogger
from avalanche.training.plugins import EvaluationPlugin, LRSchedulerPlugin
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.templates.problem_type import SupervisedProblem
from torch import Tensor, nn

from .augmentations import TwoViewAugmentation
from .device_data import DeviceBatches
from .device_loss import device_loss_metrics
from .distributed import check_distributed_plugins, world_size, wrap_for_training
from .evaluation import PROTOCOLS, ProbeEvaluator
from .probes import KNNProbe, Probe
from .ssl import SSLMethod, SSLOutput, create_ssl_method, recommended_lr
from .validation import check_choice, check_number

__all__ = [
    "LR_SCHEDULES",
    "PRECISIONS",
    "SelfSupervisedModel",
    "SelfSupervisedProblem",
    "SelfSupervisedStrategy",
    "TrainConfig",
    "default_ssl_evaluator",
]

#: Accepted values of ``lr_schedule``.
LR_SCHEDULES = ("none", "cosine")

#: Accepted values of ``precision``: float32, bfloat16 autocast, float16 autocast with a gradient scaler.
PRECISIONS = ("32", "bf16", "16")

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}


@dataclass
class TrainConfig:
    """The ``train`` configuration section (defaults: a quick CPU run; LUMP's values in brackets).

    Attributes:
        epochs: epochs per task (3; LUMP: 200).
        batch_size: training minibatch size (128; LUMP: 256).
        lr: SGD learning rate as used; ``None`` (the default) takes the SSL method's
            :func:`~avalanche_freeze.ssl.recommended_lr` (0.06 for most; LUMP: 0.03 at batch 256).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (5e-4).
        lr_schedule: ``none`` or ``cosine`` over each task's epochs (cosine).
        precision: ``32`` (float32), ``bf16`` (bfloat16 autocast) or ``16`` (float16 autocast with a
            gradient scaler); the SSL losses are computed in float32 in every case (32).
        channels_last: train with the NHWC memory layout (faster convolutions on recent GPUs; off).
        sync_batchnorm: under ``torchrun`` on CUDA, BatchNorm statistics over the global batch (on).
        data_on_device: keep each task's training images on the device and draw the mini-batches
            there (:class:`~avalanche_freeze.device_data.DeviceBatches`: no per-image loading work;
            another shuffle than the loader's, so other numbers; single process only; off).
        compile: ``torch.compile`` the training step's model forward and loss (and, through
            AOTAutograd, its backward); a new frozen prefix recompiles it once (off).
    """

    epochs: int = 3
    batch_size: int = 128
    lr: Optional[float] = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"
    precision: str = "32"
    channels_last: bool = False
    sync_batchnorm: bool = True
    data_on_device: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        self.precision = str(self.precision)
        check_number("epochs", self.epochs, at_least=1, integer=True)
        check_number("batch_size", self.batch_size, at_least=2, integer=True)
        if self.lr is not None:
            check_number("lr", self.lr, above=0)
        check_number("momentum", self.momentum, at_least=0, at_most=1)
        check_number("weight_decay", self.weight_decay, at_least=0)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)


class SelfSupervisedModel(nn.Module):
    """A backbone and its self-supervised heads.

    ``forward(x)`` returns backbone features; ``forward(view1, view2)`` runs the SSL method on
    the two views and returns its :class:`~avalanche_freeze.ssl.SSLOutput` (the training
    forward, through DistributedDataParallel when training distributed).
    """

    def __init__(self, backbone: nn.Module, ssl: SSLMethod) -> None:
        super().__init__()
        self.backbone = backbone
        self.ssl = ssl

    def forward(self, x: Tensor, view2: Optional[Tensor] = None) -> Union[Tensor, SSLOutput]:  # type: ignore[override]
        if view2 is None:
            return self.backbone(x)
        return self.ssl(self.backbone, x, view2)


def default_ssl_evaluator() -> EvaluationPlugin:
    """Training loss and time per epoch/experience, printed by Avalanche's InteractiveLogger."""
    return EvaluationPlugin(
        device_loss_metrics(epoch=True, experience=True),
        timing_metrics(epoch=True),
        loggers=[InteractiveLogger()],
    )


def _infer_feature_dim(backbone: nn.Module, augmentation: TwoViewAugmentation) -> int:
    dim = getattr(backbone, "feature_dim", None)
    if isinstance(dim, int):
        return dim
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(2, augmentation.channels, augmentation.image_size, augmentation.image_size))
    backbone.train(was_training)
    if out.dim() != 2:
        raise ValueError(f"the backbone must return [B, D] features; it returned shape {tuple(out.shape)}")
    return out.shape[1]


class _LRScheduler(LRSchedulerPlugin, supports_distributed=True):
    """Avalanche's scheduler plugin, which steps identically in every process."""


class SelfSupervisedProblem(SupervisedProblem):
    """The self-supervised problem: what a minibatch, a forward pass and a loss are.

    Training: the minibatch's raw images become two augmented views (``mb_views``), the
    forward pass runs the SSL method on them (``ssl_output``, under ``torch.autocast`` when
    ``precision`` is ``bf16`` or ``16``) and the loss is the SSL loss. With ``precision="16"``
    the backward pass scales the loss and unscales the gradients right after, so plugins that
    read gradients (``after_backward``) see their true values; the step is skipped, as
    ``torch.amp.GradScaler`` does, when they are not finite.
    Evaluation: the forward pass gives backbone features (``mb_features``) and, when a
    probe is set, the probe's class scores (``mb_output``), so Avalanche's accuracy metrics
    work; the loss is the probe's evaluation loss.
    """

    model: SelfSupervisedModel
    augmentation: TwoViewAugmentation
    probe: Optional[Probe]
    probe_protocol: str
    probe_evaluator: ProbeEvaluator
    mb_views: Optional[List[Tensor]]
    ssl_output: Optional[SSLOutput]
    mb_features: Optional[Tensor]
    precision: str
    channels_last: bool
    grad_scaler: Optional["torch.amp.GradScaler"]
    #: the module the training forward goes through: ``model``, or its DistributedDataParallel wrapper
    training_module: nn.Module

    def autocast(self):
        """The autocast context of the training forward (a no-op at ``precision="32"``)."""
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype, enabled=dtype is not None)

    @property
    def backbone(self) -> nn.Module:
        """The backbone being trained."""
        return self.model.backbone

    @property
    def ssl_method(self) -> SSLMethod:
        """The self-supervised method (heads and loss)."""
        return self.model.ssl

    def _unpack_minibatch(self):
        super()._unpack_minibatch()
        if self.is_training:
            views = self.augmentation(self.mb_x)
            if self.channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            self.mb_views = list(views)

    def forward(self):
        if self.is_training:
            assert self.mb_views is not None
            with self.autocast():
                self.ssl_output = self.training_module(*self.mb_views)
            return self.ssl_output.features[0]
        self.mb_features = self.model(self.augmentation.normalize(self.mb_x))
        if self.probe is None:
            return self.mb_features
        return self.probe_evaluator.fitted(self, self.probe, self.probe_protocol).predict_scores(self.mb_features)

    def criterion(self):
        if self.is_training:
            assert self.ssl_output is not None
            return self.ssl_output.loss
        if self.probe is None:
            return torch.zeros((), device=self.device)
        return self.probe.eval_loss(self.mb_output, self.mb_y)

    def backward(self):
        if self.grad_scaler is None:
            return super().backward()
        self.grad_scaler.scale(self.loss).backward(retain_graph=self.retain_graph)
        self.grad_scaler.unscale_(self.optimizer)

    def optimizer_step(self):
        if self.grad_scaler is None:
            return super().optimizer_step()
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def _after_update(self, **kwargs):
        self.model.ssl.after_update(self.model.backbone)
        super()._after_update(**kwargs)

    def _after_training_exp(self, **kwargs):
        self.mb_views = None
        self.ssl_output = None
        super()._after_training_exp(**kwargs)


class SelfSupervisedStrategy(SelfSupervisedProblem, SupervisedTemplate):
    """Self-supervised continual learning on any Avalanche classification benchmark.

    Args:
        model: the backbone (returns ``[B, D]`` features), e.g. :class:`~avalanche_freeze.backbones.CifarResNet18`.
        augmentation: the two-view augmentation for the benchmark's images
            (also provides the evaluation normalisation).
        ssl: a registered method name (``simsiam``, ``barlowtwins``, ``simclr``,
            ``byol``, ``vicreg``, or one added with
            :func:`~avalanche_freeze.ssl.register_ssl_method`) or an
            :class:`~avalanche_freeze.ssl.SSLMethod`.
        ssl_options: keyword options for the named method (e.g. ``{"proj_dim": 512}``).
        optimizer: an optimizer over ``strategy.model`` parameters; by default SGD
            with ``lr``, ``momentum`` and ``weight_decay``.
        lr, momentum, weight_decay: SGD's options; the defaults of every training option here
            (``lr`` the SSL method's :func:`~avalanche_freeze.ssl.recommended_lr`, 0.06 for most,
            momentum 0.9, weight decay 5e-4, cosine schedule, batch 128, 3 epochs, float32) are
            :class:`TrainConfig`'s, so a strategy built in Python trains as the command line
            does. LUMP's reference: lr 0.03 at batch 256, no schedule.
        lr_schedule: ``none`` or ``cosine`` (cosine over each experience's epochs,
            stepped every epoch and reset at every experience).
        probe: the evaluation probe whose predictions become ``mb_output`` at eval
            time (default ``KNNProbe()``); ``None`` evaluates features only.
        probe_protocol: ``class_incremental`` (bank = training data of all seen
            experiences) or ``task_incremental`` (bank = training data of the
            evaluated experience).
        probe_bank_stream: optional training stream used for probe banks of
            experiences not trained yet (task-incremental evaluation of future tasks).
        train_mb_size, train_epochs, eval_mb_size, device, plugins, evaluator, eval_every: as in
            Avalanche's templates.
        num_workers: dataloader workers.
        precision: ``32`` (float32, default), ``bf16`` (bfloat16 autocast) or ``16`` (float16
            autocast with a gradient scaler). The training forward runs under autocast; SSL
            losses are computed in float32; evaluation features are extracted in float32.
        channels_last: keep the model and the training views in the NHWC memory layout.
        sync_batchnorm: under ``torchrun`` on CUDA, synchronise BatchNorm statistics across
            processes (default on, as solo-learn does for SSL; PyTorch has no CPU kernel for it).
        data_on_device: hold each experience's training images on the device and draw the
            mini-batches there instead of Avalanche's loader (see :class:`TrainConfig`).
        compile: ``torch.compile`` the training forward (backbone, heads, loss) before the first
            experience; ``compile_options`` are passed to ``torch.compile`` (e.g.
            ``{"mode": "max-autotune"}``, ``{"backend": "aot_eager"}``).

    Under ``torchrun`` (:mod:`~avalanche_freeze.distributed`) ``train_mb_size`` is the batch of
    one process, the training forward goes through ``DistributedDataParallel`` and evaluation
    is not sharded (every process evaluates everything, so the accuracies do not depend on the
    number of processes); every plugin must declare ``supports_distributed``.

    Attributes:
        probe_evaluator: the :class:`~avalanche_freeze.evaluation.ProbeEvaluator`
            (banks, fitted probes) shared by the strategy and the probe metrics.

    Example:
        >>> from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy, make_benchmark
        >>> from avalanche_freeze.plugins import LUMPPlugin
        >>> bench = make_benchmark("fmnist", max_train_per_task=256)  # doctest: +SKIP
        >>> strategy = SelfSupervisedStrategy(
        ...     model=CifarResNet18(width=0.25, in_channels=1), augmentation=bench.augmentation,
        ...     ssl="simsiam", plugins=[LUMPPlugin()], train_mb_size=64)  # doctest: +SKIP
        >>> for exp in bench.benchmark.train_stream:  # doctest: +SKIP
        ...     strategy.train(exp)
        ...     strategy.eval(bench.benchmark.test_stream[: exp.current_experience + 1])
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        augmentation: TwoViewAugmentation,
        ssl: Union[str, SSLMethod] = "simsiam",
        ssl_options: Optional[dict] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        lr: Optional[float] = TrainConfig.lr,
        momentum: float = TrainConfig.momentum,
        weight_decay: float = TrainConfig.weight_decay,
        lr_schedule: str = TrainConfig.lr_schedule,
        probe: Optional[Probe] = KNNProbe(),
        probe_protocol: str = "class_incremental",
        probe_bank_stream: Optional[Sequence] = None,
        train_mb_size: int = TrainConfig.batch_size,
        train_epochs: int = TrainConfig.epochs,
        eval_mb_size: int = 256,
        device: Union[str, torch.device] = "cpu",
        plugins: Optional[List] = None,
        evaluator: Union[EvaluationPlugin, Callable[[], EvaluationPlugin], None] = default_ssl_evaluator,
        eval_every: int = -1,
        num_workers: int = 0,
        precision: str = TrainConfig.precision,
        channels_last: bool = TrainConfig.channels_last,
        sync_batchnorm: bool = TrainConfig.sync_batchnorm,
        data_on_device: bool = TrainConfig.data_on_device,
        compile: bool = TrainConfig.compile,
        compile_options: Optional[dict] = None,
    ) -> None:
        precision = str(precision)
        check_choice("precision", precision, PRECISIONS)
        check_choice("probe_protocol", probe_protocol, PROTOCOLS)
        check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        check_number("train_mb_size", train_mb_size, at_least=2, integer=True)  # BatchNorm needs two samples
        if isinstance(ssl, str):
            ssl_method = create_ssl_method(
                ssl, feature_dim=_infer_feature_dim(model, augmentation), backbone=model, **(ssl_options or {})
            )
        elif isinstance(ssl, SSLMethod):
            if ssl_options:
                raise ValueError("ssl_options apply only when ssl is a method name")
            ssl_method = ssl
        else:
            raise TypeError(f"ssl must be a method name or an SSLMethod; got {type(ssl).__name__}")
        wrapped = SelfSupervisedModel(model, ssl_method)
        lr = recommended_lr(ssl if isinstance(ssl, str) else ssl_method) if lr is None else lr
        check_number("lr", lr, above=0)
        if optimizer is None:
            optimizer = torch.optim.SGD(wrapped.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                                        foreach=True)  # one multi-tensor op per step phase: fewer launches
        self.probe_evaluator = ProbeEvaluator(bank_stream=probe_bank_stream, mb_size=eval_mb_size,
                                              num_workers=num_workers)
        plugins = [self.probe_evaluator] + list(plugins or [])
        if lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, train_epochs))
            plugins.append(_LRScheduler(scheduler, reset_scheduler=True, reset_lr=True, step_granularity="epoch"))
        check_distributed_plugins([*plugins, ssl_method])
        super().__init__(
            model=wrapped,
            optimizer=optimizer,
            train_mb_size=train_mb_size,
            train_epochs=train_epochs,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=plugins,
            evaluator=evaluator,
            eval_every=eval_every,
        )
        self.augmentation = augmentation.to(self.device)
        self.probe = probe
        self.probe_protocol = probe_protocol
        self.num_workers = num_workers
        self.precision = precision
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.grad_scaler = torch.amp.GradScaler(torch.device(self.device).type) if precision == "16" else None
        self.sync_batchnorm = sync_batchnorm
        self.data_on_device = data_on_device
        self.compile = compile
        self.compile_options = dict(compile_options or {})
        self._device_batches: Optional[Tuple[object, DeviceBatches]] = None  # (dataset, its batches)
        self.training_module = self.model
        self.mb_views = None
        self.ssl_output = None
        self.mb_features = None

    def mark_trained(self, experience) -> None:
        """Record that the backbone was trained on ``experience`` by something other than this strategy
        (a supervised reference strategy that shares the backbone, a custom loop).

        The probes add the experience's images to their banks, and the evaluator's metrics are told
        a training experience began (``before_training_exp``), so Avalanche's forgetting and BWT
        metrics take the next evaluation of ``experience`` as its reference accuracy, as they do
        when the strategy trains itself. Call it after each training experience, before ``eval``.

        Args:
            experience: the training experience the backbone was just trained on.

        Example:
            >>> for exp in bench.benchmark.train_stream:  # doctest: +SKIP
            ...     supervised.train(exp)              # Avalanche's strategy, same backbone
            ...     probes.mark_trained(exp)
            ...     probes.eval(bench.benchmark.test_stream[: exp.current_experience + 1])
        """
        self.experience = experience
        self.probe_evaluator.add_trained(experience)
        if self.evaluator is not None:
            for metric in self.evaluator.metrics:
                metric.before_training_exp(self)

    def _before_training_exp(self, **kwargs):
        super()._before_training_exp(**kwargs)
        if self.training_module is self.model:  # once, with the model on its device
            self.training_module = wrap_for_training(self.model, sync_batchnorm=self.sync_batchnorm)
            if self.compile:
                self.training_module = torch.compile(self.training_module, **self.compile_options)

    def _obtain_common_dataloader_parameters(self, **kwargs):
        """Avalanche's loader arguments; evaluation loaders are never sharded across processes (every
        process evaluates the whole experience, so the accuracies do not depend on the number of
        processes)."""
        args = super()._obtain_common_dataloader_parameters(**kwargs)
        if not self.is_training:
            args["distributed_sampling"] = False
        return args

    def make_train_dataloader(self, num_workers=None, shuffle=True, pin_memory=None,
                              persistent_workers=None, drop_last=None, **kwargs):
        """Avalanche's loader (pinned memory on CUDA); drops the last incomplete batch when the dataset
        has a full one (a 1-sample batch would break BatchNorm in the heads); workers persist over
        the epochs of an experience."""
        workers = self.num_workers if num_workers is None else num_workers
        if persistent_workers is None:
            persistent_workers = workers > 0
        if drop_last is None:
            drop_last = len(self.adapted_dataset) >= self.train_mb_size
        if self.data_on_device:
            if world_size() > 1:
                raise ValueError("data_on_device holds one process's data; under torchrun use the loader "
                                 "(train.data_on_device=false)")
            held = self._device_batches
            if held is None or held[0] is not self.adapted_dataset:  # a new experience: read it once
                held = (self.adapted_dataset, DeviceBatches(self.adapted_dataset, batch_size=self.train_mb_size,
                                                            device=self.device, shuffle=shuffle, drop_last=drop_last))
                self._device_batches = held
            self.dataloader = held[1]
            return
        super().make_train_dataloader(
            num_workers=workers,
            shuffle=shuffle, pin_memory=pin_memory, persistent_workers=persistent_workers,
            drop_last=drop_last, **kwargs,
        )
