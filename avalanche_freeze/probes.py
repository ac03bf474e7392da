"""Probes that turn frozen backbone features into class predictions: kNN and linear.

Both follow one small interface: ``fit(features, labels)`` on a bank of
labelled features, then ``predict_scores(features)`` returns per-class scores
(argmax = prediction). The number of classes is ``max(label) + 1`` of the bank,
so class-incremental experiences with non-contiguous class ids work.

Example:
    >>> import torch
    >>> bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> probe = KNNProbe(k=200).fit(bank, torch.tensor([3, 3, 7]))
    >>> probe.predict_scores(torch.tensor([[1.0, 0.05]])).argmax(1).item()
    3
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .validation import check_choice, check_number

__all__ = ["KNNProbe", "LinearProbe", "Probe", "PROBES", "make_probe"]


class Probe:
    """Interface of a probe (see the module docs)."""

    name: str = "probe"

    def fit(self, features: Tensor, labels: Tensor) -> "Probe":
        raise NotImplementedError

    def predict_scores(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def eval_loss(self, scores: Tensor, labels: Tensor) -> Tensor:
        """The evaluation loss of ``scores`` (from :meth:`predict_scores`) against ``labels``:
        cross-entropy of the scores as logits. Labels of classes absent from the bank
        cannot be predicted; they count as the last class."""
        return F.cross_entropy(scores, labels.clamp_max(scores.shape[1] - 1))

    @staticmethod
    def _check_bank(features: Tensor, labels: Tensor) -> None:
        if features.dim() != 2 or labels.dim() != 1 or len(features) != len(labels):
            raise ValueError(
                f"bank features must be [N, D] and labels [N]; got {tuple(features.shape)} and {tuple(labels.shape)}"
            )
        if len(labels) == 0:
            raise ValueError("the probe's bank is empty")


class KNNProbe(Probe):
    """Weighted k-nearest-neighbour classifier on L2-normalised features (LUMP's kNN).

    The score of class ``c`` for a query ``q`` is ``sum over the k most similar bank
    samples b with label c of exp((cos(q, b) - m) / temperature)``, with ``m`` the largest
    similarity of ``q`` to the bank: LUMP's weighted vote, scaled per query so that no
    temperature overflows.

    Args:
        k: neighbours (200); capped only by the bank size.
        temperature: similarity temperature (0.1).
        chunk_size: queries processed at once (bounds memory).
    """

    name = "knn"

    def __init__(self, *, k: int = 200, temperature: float = 0.1, chunk_size: int = 1024) -> None:
        check_number("k", k, at_least=1, integer=True)
        check_number("temperature", temperature, above=0)
        check_number("chunk_size", chunk_size, at_least=1, integer=True)
        self.k = k
        self.temperature = temperature
        self.chunk_size = chunk_size
        self.bank: Optional[Tensor] = None
        self.bank_labels: Optional[Tensor] = None
        self.num_classes = 0

    def fit(self, features: Tensor, labels: Tensor) -> "KNNProbe":
        self._check_bank(features, labels)
        self.bank = F.normalize(features.float(), dim=1)
        self.bank_labels = labels.long().to(features.device)
        self.num_classes = int(labels.max()) + 1
        return self

    @torch.no_grad()
    def predict_scores(self, features: Tensor) -> Tensor:
        if self.bank is None or self.bank_labels is None:
            raise RuntimeError("KNNProbe.predict_scores called before fit")
        k = min(self.k, len(self.bank))
        query = F.normalize(features.float().to(self.bank.device), dim=1)
        out = []
        for chunk in query.split(self.chunk_size):
            sim, idx = (chunk @ self.bank.T).topk(k, dim=1)  # sorted: the first is the largest
            # exp((sim - max) / T): the same votes up to a factor per query, without overflow at small T
            weights = ((sim - sim[:, :1]) / self.temperature).exp()
            scores = torch.zeros(len(chunk), self.num_classes, device=chunk.device)
            scores.scatter_add_(1, self.bank_labels[idx], weights)
            out.append(scores)
        return torch.cat(out)

    def eval_loss(self, scores: Tensor, labels: Tensor) -> Tensor:
        """Negative log-likelihood of the normalised class votes."""
        votes = scores.clamp_min(0)
        probs = votes / votes.sum(1, keepdim=True).clamp_min(1e-12)
        return F.nll_loss(probs.clamp_min(1e-12).log(), labels.clamp_max(probs.shape[1] - 1))


class LinearProbe(Probe):
    """A linear classifier trained on frozen, L2-normalised features (cross-entropy, Adam).

    Args:
        epochs: passes over the bank (100).
        lr: Adam learning rate (0.01).
        batch_size: minibatch size (512).
        weight_decay: L2 penalty (1e-5).
        seed: seed of initialisation and shuffling (results do not depend on global RNG).
    """

    name = "linear"

    def __init__(
        self, *, epochs: int = 100, lr: float = 0.01, batch_size: int = 512,
        weight_decay: float = 1e-5, seed: int = 0,
    ) -> None:
        check_number("epochs", epochs, at_least=1, integer=True)
        check_number("lr", lr, above=0)
        check_number("batch_size", batch_size, at_least=1, integer=True)
        check_number("weight_decay", weight_decay, at_least=0)
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.seed = seed
        self.classifier: Optional[torch.nn.Linear] = None

    def fit(self, features: Tensor, labels: Tensor) -> "LinearProbe":
        self._check_bank(features, labels)
        x = F.normalize(features.float(), dim=1)
        y = labels.long().to(x.device)
        gen = torch.Generator().manual_seed(self.seed)
        clf = torch.nn.Linear(x.shape[1], int(y.max()) + 1).to(x.device)
        with torch.no_grad():
            bound = 1.0 / x.shape[1] ** 0.5
            clf.weight.copy_(torch.rand(clf.weight.shape, generator=gen).mul_(2 * bound).sub_(bound))
            clf.bias.zero_()
        opt = torch.optim.Adam(clf.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        with torch.enable_grad():
            for _ in range(self.epochs):
                perm = torch.randperm(len(x), generator=gen).to(x.device)
                for idx in perm.split(self.batch_size):
                    opt.zero_grad()
                    F.cross_entropy(clf(x[idx]), y[idx]).backward()
                    opt.step()
        self.classifier = clf.eval()
        return self

    @torch.no_grad()
    def predict_scores(self, features: Tensor) -> Tensor:
        if self.classifier is None:
            raise RuntimeError("LinearProbe.predict_scores called before fit")
        x = F.normalize(features.float().to(self.classifier.weight.device), dim=1)
        return self.classifier(x)


PROBES = {"knn": KNNProbe, "linear": LinearProbe}


def make_probe(name: str, **options) -> Probe:
    """Build a probe by name (``knn`` or ``linear``)."""
    check_choice("probe", name, PROBES)
    return PROBES[name](**options)
