"""The self-supervised continual-learning strategy, as an Avalanche training template.

:class:`SelfSupervisedStrategy` trains a backbone with a self-supervised loss on
two augmented views of each image and never reads the labels while training.
At evaluation it turns the backbone into a classifier with a probe (kNN by
default) fitted on the training data of the experiences seen so far, so that
Avalanche's stock accuracy, forgetting and BWT metrics, its loggers and the
project's own probe metrics all work unchanged.

Data flow of one training iteration (attributes other plugins may read or replace)::

    mb_x (raw images) -> augmentation -> mb_views (view1, view2)    [_unpack_minibatch]
    before_forward plugins (e.g. LUMP mixes mb_views with its buffer)
    model.ssl(backbone, *mb_views) -> ssl_output (loss, features, projections)
    criterion() = ssl_output.loss; before_backward plugins may add terms to strategy.loss
    backward, optimizer step, ssl.after_update (momentum encoders), after_update plugins
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from avalanche.evaluation.metrics import loss_metrics, timing_metrics
from avalanche.logging import InteractiveLogger
from avalanche.training.plugins import EvaluationPlugin, LRSchedulerPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .augmentations import TwoViewAugmentation
from .probes import KNNProbe, Probe
from .ssl import SSLMethod, SSLOutput, create_ssl_method

__all__ = [
    "PROTOCOLS",
    "SelfSupervisedModel",
    "SelfSupervisedStrategy",
    "default_ssl_evaluator",
]

#: Evaluation protocols of the probes.
PROTOCOLS = ("class_incremental", "task_incremental")
LR_SCHEDULES = ("none", "cosine")


class SelfSupervisedModel(nn.Module):
    """A backbone and its self-supervised heads; ``forward`` returns backbone features."""

    def __init__(self, backbone: nn.Module, ssl: SSLMethod) -> None:
        super().__init__()
        self.backbone = backbone
        self.ssl = ssl

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)


def default_ssl_evaluator() -> EvaluationPlugin:
    """Training loss and time per epoch/experience, printed by Avalanche's InteractiveLogger."""
    return EvaluationPlugin(
        loss_metrics(epoch=True, experience=True),
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


class SelfSupervisedStrategy(SupervisedTemplate):
    """Self-supervised continual learning on any Avalanche classification benchmark.

    Args:
        model: the backbone (returns ``[B, D]`` features), e.g. :class:`~avalanche_freeze.backbones.CifarResNet18`.
        augmentation: the two-view augmentation for the benchmark's images
            (also provides the evaluation normalisation).
        ssl: a registered method name (``simsiam``, ``barlowtwins``, ``simclr``,
            ``byol``, ``vicreg``) or an :class:`~avalanche_freeze.ssl.SSLMethod`.
        ssl_options: keyword options for the named method (e.g. ``{"proj_dim": 512}``).
        optimizer: an optimizer over ``strategy.model`` parameters; by default SGD
            with ``lr``, ``momentum`` and ``weight_decay``.
        lr: SGD learning rate (0.03, LUMP's value at batch 256).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (5e-4).
        lr_schedule: ``none`` or ``cosine`` (cosine over each experience's epochs,
            stepped every epoch and reset at every experience).
        probe: the evaluation probe whose predictions become ``mb_output`` at eval
            time (default ``KNNProbe()``); ``None`` evaluates features only.
        probe_protocol: ``class_incremental`` (bank = training data of all seen
            experiences) or ``task_incremental`` (bank = training data of the
            evaluated experience).
        probe_bank_stream: optional training stream used for probe banks of
            experiences not trained yet (task-incremental evaluation of future tasks).
        train_mb_size, train_epochs, eval_mb_size, device, plugins, evaluator,
            eval_every: as in Avalanche's templates.
        num_workers: dataloader workers.

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
        lr: float = 0.03,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_schedule: str = "none",
        probe: Optional[Probe] = KNNProbe(),
        probe_protocol: str = "class_incremental",
        probe_bank_stream: Optional[Sequence] = None,
        train_mb_size: int = 256,
        train_epochs: int = 1,
        eval_mb_size: int = 256,
        device: Union[str, torch.device] = "cpu",
        plugins: Optional[List] = None,
        evaluator: Union[EvaluationPlugin, Callable[[], EvaluationPlugin], None] = default_ssl_evaluator,
        eval_every: int = -1,
        num_workers: int = 0,
    ) -> None:
        if probe_protocol not in PROTOCOLS:
            raise ValueError(f"probe_protocol={probe_protocol!r} is not accepted; accepted: {', '.join(PROTOCOLS)}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={lr_schedule!r} is not accepted; accepted: {', '.join(LR_SCHEDULES)}")
        if train_mb_size < 2:
            raise ValueError(f"train_mb_size={train_mb_size} must be >= 2 (BatchNorm needs two samples)")
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
        if optimizer is None:
            optimizer = torch.optim.SGD(wrapped.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        plugins = list(plugins or [])
        if lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, train_epochs))
            plugins.append(LRSchedulerPlugin(scheduler, reset_scheduler=True, reset_lr=True, step_granularity="epoch"))
        super().__init__(
            model=wrapped,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss(),
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
        self.probe_bank_stream = list(probe_bank_stream) if probe_bank_stream is not None else None
        self.num_workers = num_workers
        self.trained_experiences: Dict[int, object] = {}
        self.mb_views: Optional[List[Tensor]] = None
        self.ssl_output: Optional[SSLOutput] = None
        self.mb_features: Optional[Tensor] = None
        self.model_version = 0
        self._bank_cache: Dict[Tuple[int, int], Tuple[Tensor, Tensor]] = {}
        self._probe_cache: Dict[tuple, Probe] = {}

    # ------------------------------------------------------------ properties
    @property
    def backbone(self) -> nn.Module:
        """The backbone being trained."""
        return self.model.backbone

    @property
    def ssl_method(self) -> SSLMethod:
        """The self-supervised method (heads and loss)."""
        return self.model.ssl

    # --------------------------------------------------------- training loop
    def make_train_dataloader(self, num_workers=None, shuffle=True, pin_memory=None,
                              persistent_workers=False, drop_last=None, **kwargs):
        """Avalanche's loader; drops the last incomplete batch when the dataset has a full one
        (a 1-sample batch would break BatchNorm in the heads)."""
        if drop_last is None:
            drop_last = len(self.adapted_dataset) >= self.train_mb_size
        super().make_train_dataloader(
            num_workers=self.num_workers if num_workers is None else num_workers,
            shuffle=shuffle, pin_memory=pin_memory, persistent_workers=persistent_workers,
            drop_last=drop_last, **kwargs,
        )

    def _before_training_exp(self, **kwargs):
        assert self.experience is not None
        self.trained_experiences[self.experience.current_experience] = self.experience
        super()._before_training_exp(**kwargs)

    def _unpack_minibatch(self):
        super()._unpack_minibatch()
        if self.is_training:
            self.mb_views = list(self.augmentation(self.mb_x))

    def forward(self):
        if self.is_training:
            assert self.mb_views is not None
            self.ssl_output = self.model.ssl(self.model.backbone, *self.mb_views)
            return self.ssl_output.features[0]
        self.mb_features = self.model(self.augmentation.normalize(self.mb_x))
        if self.probe is None:
            return self.mb_features
        return self.fitted_probe(self.probe, self.probe_protocol).predict_scores(self.mb_features)

    def criterion(self):
        if self.is_training:
            assert self.ssl_output is not None
            return self.ssl_output.loss
        if self.probe is None:
            return torch.zeros((), device=self.device)
        if isinstance(self.probe, KNNProbe):
            # negative log-likelihood of the kNN's normalised class votes
            scores = self.mb_output.clamp_min(0)
            probs = scores / scores.sum(1, keepdim=True).clamp_min(1e-12)
            return F.nll_loss(probs.clamp_min(1e-12).log(), self._clip_labels(self.mb_y, probs.shape[1]))
        return F.cross_entropy(self.mb_output, self._clip_labels(self.mb_y, self.mb_output.shape[1]))

    @staticmethod
    def _clip_labels(y: Tensor, n: int) -> Tensor:
        # labels of classes absent from the bank cannot be predicted; count them as the last class
        return y.clamp_max(n - 1)

    def _after_update(self, **kwargs):
        self.model.ssl.after_update(self.model.backbone)
        self.model_version += 1
        super()._after_update(**kwargs)

    def _after_training_exp(self, **kwargs):
        self.mb_views = None
        self.ssl_output = None
        super()._after_training_exp(**kwargs)

    # ---------------------------------------------------------------- probes
    def _train_experience(self, exp_id: int):
        if exp_id in self.trained_experiences:
            return self.trained_experiences[exp_id]
        if self.probe_bank_stream is not None and exp_id < len(self.probe_bank_stream):
            return self.probe_bank_stream[exp_id]
        raise RuntimeError(
            f"no training data for experience {exp_id}: it was not trained on; "
            "pass probe_bank_stream=benchmark.train_stream to evaluate unseen experiences"
        )

    @torch.no_grad()
    def bank_features(self, exp_id: int) -> Tuple[Tensor, Tensor]:
        """Backbone features and labels of training experience ``exp_id`` under the current model."""
        key = (exp_id, self.model_version)
        if key not in self._bank_cache:
            self._bank_cache = {k: v for k, v in self._bank_cache.items() if k[1] == self.model_version}
            dataset = self._train_experience(exp_id).dataset.eval()
            # a private generator keeps evaluation from shifting the global RNG that drives training
            loader = DataLoader(dataset, batch_size=self.eval_mb_size, shuffle=False,
                                num_workers=self.num_workers, generator=torch.Generator())
            was_training = self.model.training
            self.model.eval()
            feats, labels = [], []
            for batch in loader:
                x = batch[0].to(self.device)
                feats.append(self.model(self.augmentation.normalize(x)))
                labels.append(torch.as_tensor(batch[1]).to(self.device))
            self.model.train(was_training)
            self._bank_cache[key] = (torch.cat(feats), torch.cat(labels))
        return self._bank_cache[key]

    def probe_bank_ids(self, protocol: str, eval_exp_id: int) -> List[int]:
        """Training experiences whose data form the probe's bank."""
        if protocol == "task_incremental":
            return [eval_exp_id]
        if protocol == "class_incremental":
            seen = sorted(self.trained_experiences)
            return seen if seen else [eval_exp_id]
        raise ValueError(f"protocol={protocol!r} is not accepted; accepted: {', '.join(PROTOCOLS)}")

    def fitted_probe(self, probe: Probe, protocol: str, eval_exp_id: Optional[int] = None) -> Probe:
        """``probe`` fitted on the bank of ``protocol`` for the experience being evaluated.

        Fitted probes are cached per model version, so several metrics share one fit.
        """
        if eval_exp_id is None:
            assert self.experience is not None
            eval_exp_id = self.experience.current_experience
        ids = tuple(self.probe_bank_ids(protocol, eval_exp_id))
        key = (id(probe), ids, self.model_version)
        if key not in self._probe_cache:
            self._probe_cache = {k: v for k, v in self._probe_cache.items() if k[2] == self.model_version}
            banks = [self.bank_features(i) for i in ids]
            fitted = copy.copy(probe).fit(torch.cat([b[0] for b in banks]), torch.cat([b[1] for b in banks]))
            self._probe_cache[key] = fitted
        return self._probe_cache[key]

