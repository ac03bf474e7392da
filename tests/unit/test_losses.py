"""Each SSL loss against its formula, and shown to decrease on random tensors."""

import pytest
import torch
import torch.nn.functional as F

from avalanche_freeze.backbones import CifarResNet18
from avalanche_freeze.ssl import available_ssl_methods, create_ssl_method


def test_simsiam_matches_formula():
    m = create_ssl_method("simsiam", feature_dim=8, proj_dim=16, pred_dim=4).eval()
    f1, f2 = torch.randn(6, 8), torch.randn(6, 8)
    out = m.loss_from_features(f1, f2, view1=None, view2=None)
    z1, z2 = m.projector(f1), m.projector(f2)
    p1, p2 = m.predictor(z1), m.predictor(z2)
    ref = -0.5 * (F.cosine_similarity(p1, z2).mean() + F.cosine_similarity(p2, z1).mean())
    assert torch.allclose(out.loss, ref, atol=1e-6)


def test_barlow_twins_matches_formula():
    m = create_ssl_method("barlowtwins", feature_dim=8, proj_dim=6, lambda_offdiag=5e-3)
    za, zb = torch.randn(10, 6), torch.randn(10, 6)
    na = (za - za.mean(0)) / torch.sqrt(za.var(0, unbiased=False) + 1e-5)
    nb = (zb - zb.mean(0)) / torch.sqrt(zb.var(0, unbiased=False) + 1e-5)
    c = na.T @ nb / 10
    on = ((1 - torch.diagonal(c)) ** 2).sum()
    off = (c ** 2).sum() - (torch.diagonal(c) ** 2).sum()
    assert torch.allclose(m.pair_loss(za, zb), on + 5e-3 * off, rtol=1e-4)


def test_simclr_matches_formula():
    m = create_ssl_method("simclr", feature_dim=8, proj_dim=16, out_dim=4, temperature=0.5)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / 0.5
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(5, 10), torch.arange(0, 5)])
    assert torch.allclose(m.pair_loss(a, b), F.cross_entropy(sim, targets), atol=1e-5)


def test_vicreg_matches_formula():
    m = create_ssl_method("vicreg", feature_dim=8, proj_dim=6)
    a, b = torch.randn(12, 6), torch.randn(12, 6)

    def var(x):
        return F.relu(1 - torch.sqrt(x.var(0) + 1e-4)).mean()

    def cov(x):
        x = x - x.mean(0)
        c = x.T @ x / (len(x) - 1)
        return ((c ** 2).sum() - (torch.diagonal(c) ** 2).sum()) / x.shape[1]

    ref = 25 * F.mse_loss(a, b) + 25 * 0.5 * (var(a) + var(b)) + 1 * (cov(a) + cov(b))
    assert torch.allclose(m.pair_loss(a, b), ref, rtol=1e-4)


def test_byol_target_is_momentum_average():
    net = CifarResNet18(width=0.125, in_channels=1)
    m = create_ssl_method("byol", feature_dim=net.feature_dim, backbone=net, proj_dim=16, out_dim=8, momentum=0.9)
    before = next(m.target_backbone.parameters()).clone()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    m.after_update(net)
    online = next(net.parameters())
    assert torch.allclose(next(m.target_backbone.parameters()), 0.9 * before + 0.1 * online, atol=1e-6)


@pytest.mark.parametrize("name", ["simsiam", "barlowtwins", "simclr", "byol", "vicreg"])
def test_loss_decreases(name):
    net = CifarResNet18(width=0.125, in_channels=1)
    m = create_ssl_method(name, feature_dim=net.feature_dim, backbone=net, proj_dim=32)
    opt = torch.optim.SGD(list(net.parameters()) + list(m.parameters()), lr=0.05, momentum=0.9)
    x = torch.rand(16, 1, 12, 12)
    v1, v2 = x + 0.05 * torch.randn_like(x), x + 0.05 * torch.randn_like(x)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = m(net, v1, v2).loss
        loss.backward()
        opt.step()
        m.after_update(net)
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_registry_rejects_unknown():
    with pytest.raises(ValueError, match="ssl='moco' is not accepted; accepted: .*simsiam"):
        create_ssl_method("moco", feature_dim=8)
    assert {"simsiam", "barlowtwins", "simclr", "byol", "vicreg"} <= set(available_ssl_methods())
