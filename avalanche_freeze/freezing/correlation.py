"""Task-correlation measures between a unit's features on old and new tasks.

Two measures, both returning a score in ``[0, 1]`` (1 = fully correlated):

**Subspace projection ratio** (default; reconstructed from TRGP-style layer-wise
task correlation). A unit's representation on ``n`` samples is a matrix ``R``:
by default each sample's output flattened, ``[C*H*W, n]`` (:func:`flat_matrix`);
optionally the channel space, ``[C, n*H*W]``, each spatial position a sample
(:func:`channel_matrix`, as GPM treats convolutions). At the end of each task the top singular vectors of ``R``
carrying a fraction ``eps`` of its energy are merged into the unit's
orthonormal old-task basis ``U`` (:class:`SubspaceBasis`). On a new task,
``rho = ||U U^T R||_F^2 / ||R||_F^2``.
``C x C`` Gram matrix ``G = R R^T``: ``rho = trace(U^T G U) / trace(G)``.

**Linear CKA** (Kornblith et al., 2019) between two feature matrices ``X, Y``
(``[n, d]``, centred): ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``.

Example:
    >>> import torch
    >>> old = torch.randn(16, 3) @ torch.randn(3, 500)    # rank-3 representation in R^16
    >>> basis = SubspaceBasis(energy=0.99)
    >>> basis.update(old)
    >>> round(basis.ratio(torch.randn(16, 3) @ torch.randn(3, 500)), 2) < 1.0
    True
    >>> basis.ratio(old) >= 0.99
    True
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["SubspaceBasis", "centered_gram", "channel_matrix", "cka_from_grams", "conv_input_patches", "energy_basis", "flat_matrix", "gradient_projection_ratio",
           "REPRESENTATIONS", "linear_cka", "representation_matrix", "subspace_ratio"]


REPRESENTATIONS = ("flatten", "channel")


def flat_matrix(features: Tensor, *, center: bool = False) -> Tensor:
    """``[N, ...]`` features -> ``[prod(...), N]`` matrix, one flattened sample per column.

    With ``center=True`` the mean sample is subtracted.
    """
    m = features.reshape(features.shape[0], -1).T
    if center:
        m = m - m.mean(1, keepdim=True)
    return m.contiguous()


def representation_matrix(features: Tensor, representation: str, *, center: bool = False) -> Tensor:
    """:func:`flat_matrix` or :func:`channel_matrix` by name."""
    if representation == "flatten":
        return flat_matrix(features, center=center)
    if representation == "channel":
        return channel_matrix(features, center=center)
    raise ValueError(f"representation={representation!r} is not accepted; accepted: {', '.join(REPRESENTATIONS)}")


def channel_matrix(features: Tensor, *, center: bool = False) -> Tensor:
    """``[N, C, H, W]`` (or ``[N, C]``) features -> ``[C, N*H*W]`` matrix of channel vectors.

    With ``center=True`` each channel's mean over samples and positions is subtracted,
    so the matrix describes how features vary rather than their common offset.
    """
    if features.dim() == 2:
        m = features.T
    elif features.dim() == 4:
        m = features.permute(1, 0, 2, 3).reshape(features.shape[1], -1)
    else:
        raise ValueError(f"expected [N, C] or [N, C, H, W] features; got {tuple(features.shape)}")
    if center:
        m = m - m.mean(1, keepdim=True)
    return m.contiguous()


def subspace_ratio(basis: Optional[Tensor], representation: Tensor) -> float:
    """``||U U^T R||_F^2 / ||R||_F^2`` for an orthonormal basis ``U`` ``[d, k]`` and ``R`` ``[d, m]``.

    Returns 0.0 for an empty basis or an all-zero representation.
    """
    r = representation.double()
    total = float((r * r).sum())
    if basis is None or basis.shape[1] == 0 or total == 0.0:
        return 0.0
    if basis.shape[0] != r.shape[0]:
        raise ValueError(f"basis has dimension {basis.shape[0]} but the representation has {r.shape[0]}")
    proj = basis.double().T @ r
    return min(1.0, float((proj * proj).sum()) / total)


class SubspaceBasis:
    """A growing orthonormal basis of the directions a unit used on earlier tasks.

    :meth:`update` adds the top singular directions of the part of a new
    representation outside the current basis, until the basis captures a
    fraction ``energy`` of the new representation's total energy (GPM's rule).

    Args:
        energy: the energy threshold ``eps`` (0.97).
    """

    def __init__(self, *, energy: float = 0.97) -> None:
        if not 0.0 < energy <= 1.0:
            raise ValueError(f"energy={energy} must be in (0, 1]")
        self.energy = energy
        self.basis: Optional[Tensor] = None

    @property
    def rank(self) -> int:
        return 0 if self.basis is None else self.basis.shape[1]

    def ratio(self, representation: Tensor) -> float:
        """The subspace projection ratio of ``representation`` on this basis."""
        return subspace_ratio(self.basis, representation)

    @torch.no_grad()
    def update(self, representation: Tensor) -> None:
        """Merge the principal directions of ``representation`` ``[d, m]`` into the basis."""
        r = representation.double()
        total = float((r * r).sum())
        if total == 0.0:
            return
        d = r.shape[0]
        basis = (torch.zeros(d, 0, dtype=torch.float64, device=r.device) if self.basis is None
                 else self.basis.double().to(r.device))
        coords = basis.T @ r
        captured = float((coords * coords).sum())
        if captured / total >= self.energy or basis.shape[1] >= d:
            self.basis = basis.float()
            return
        residual = r - basis @ coords
        u, sv, _ = torch.linalg.svd(residual, full_matrices=False)
        energies = sv * sv
        needed = self.energy * total - captured
        k = int(torch.searchsorted(torch.cumsum(energies, 0), torch.tensor(needed, dtype=torch.float64, device=r.device))) + 1
        k = min(k, d - basis.shape[1], int((energies > 1e-12 * total).sum()))
        q, _ = torch.linalg.qr(torch.cat([basis, u[:, :k]], dim=1))  # re-orthonormalise against round-off
        self.basis = q.float()

    def state_dict(self) -> dict:
        return {"energy": self.energy, "basis": None if self.basis is None else self.basis.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.energy = state["energy"]
        self.basis = state["basis"]


def centered_gram(x: Tensor) -> Tensor:
    """The ``n x n`` Gram matrix ``Xc Xc^T`` of ``[n, ...]`` features (flattened, mean sample removed),
    in float64: all that linear CKA needs to keep of a set of features."""
    x = x.reshape(x.shape[0], -1).double()
    x = x - x.mean(0, keepdim=True)
    return x @ x.T


def cka_from_grams(k: Tensor, gram_l: Tensor) -> float:
    """Linear CKA ``<K, L>_F / (||K||_F ||L||_F)`` from two :func:`centered_gram` matrices."""
    if k.shape != gram_l.shape or k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"expected two n x n Gram matrices; got {tuple(k.shape)} and {tuple(gram_l.shape)}")
    cross = float((k * gram_l).sum())
    norm = float(torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(gram_l))
    return 0.0 if norm == 0.0 else min(1.0, cross / norm)


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA between ``[n, d1]`` and ``[n, d2]`` feature matrices (rows = samples).

    Returns a value in ``[0, 1]``; 1 for identical features and for features
    that differ by an orthogonal transform or an isotropic scaling. Computed in the
    ``n x n`` Gram form ``<K, L>_F / (||K||_F ||L||_F)`` with ``K = Xc Xc^T`` and
    ``L = Yc Yc^T`` (centred features), equal to the ``d x d`` form
    ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` but needing ``n^2`` memory instead of
    ``d^2``: a full-width stem's flattened output (``d = 64 * 32 * 32``) would need ~34 GB.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"expected [n, d] matrices with the same n; got {tuple(x.shape)} and {tuple(y.shape)}")
    return cka_from_grams(centered_gram(x), centered_gram(y))


# ------------------------------------------------------------------ input-patch (TRGP/GPM) reading
def conv_input_patches(inputs: Tensor, conv: "torch.nn.Conv2d", *, max_columns: int = 65536) -> Tensor:
    """The input patches a convolution multiplies with its kernel, as a ``[C_in*kh*kw, M]`` matrix.

    ``inputs`` is the convolution's input ``[N, C_in, H, W]``; each column is one receptive
    field (GPM's representation of a conv layer). When there are more than ``max_columns``
    patches, an evenly strided subset is kept so the matrix stays small at any resolution.
    """
    cols = torch.nn.functional.unfold(inputs, conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                                      stride=conv.stride)  # [N, D, L]
    m = cols.permute(1, 0, 2).reshape(cols.shape[1], -1)
    if m.shape[1] > max_columns:
        m = m[:, torch.linspace(0, m.shape[1] - 1, max_columns, device=m.device).long()]
    return m


def energy_basis(gram: Tensor, energy: float) -> Tensor:
    """Orthonormal basis ``[d, k]`` of the top eigenvectors of a Gram matrix ``R R^T`` that carry a
    fraction ``energy`` of its trace (GPM's threshold rule on ``R``'s squared singular values)."""
    values, vectors = torch.linalg.eigh(gram.double())
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    total = float(values.sum())
    if total == 0.0:
        return torch.zeros(gram.shape[0], 0)
    k = int(torch.searchsorted(torch.cumsum(values, 0), torch.tensor(energy * total, dtype=torch.float64,
                                                                     device=values.device))) + 1
    k = min(k, int((values > 1e-12 * total).sum()), gram.shape[0])
    return vectors[:, :k].float().contiguous()


def gradient_projection_ratio(basis: Tensor, gradient: Tensor) -> float:
    """TRGP's correlation of a layer's gradient with an old task: ``||G U U^T||_F / ||G||_F``
    (not squared) for a weight gradient ``G`` ``[C_out, D]`` and an orthonormal basis ``U``
    ``[D, k]`` of the old task's input patches. 0.0 for an empty basis or a zero gradient.

    Example:
        >>> u = torch.eye(4)[:, :2]                   # the old task used input directions e0, e1
        >>> round(gradient_projection_ratio(u, torch.tensor([[3.0, 4.0, 0.0, 0.0]])), 3)
        1.0
        >>> round(gradient_projection_ratio(u, torch.tensor([[1.0, 0.0, 1.0, 0.0]])), 3)
        0.707
    """
    g = gradient.reshape(gradient.shape[0], -1).double()
    norm = float(torch.linalg.matrix_norm(g))
    if basis.shape[1] == 0 or norm == 0.0:
        return 0.0
    if basis.shape[0] != g.shape[1]:
        raise ValueError(f"basis has dimension {basis.shape[0]} but the gradient rows have {g.shape[1]}")
    return min(1.0, float(torch.linalg.matrix_norm(g @ basis.double().to(g.device))) / norm)
