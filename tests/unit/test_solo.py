"""solo-learn's methods through the adapter (skipped without solo-learn: `make setup-solo`)."""

import pytest
import torch

from avalanche_freeze.run.config import ConfigError, ExperimentConfig
from avalanche_freeze.plugins import CorrelationFreezePlugin, LUMPPlugin
from avalanche_freeze.ssl import available_ssl_methods
from avalanche_freeze.ssl.solo import SOLO_METHODS, LinearWarmupCosineAnnealingLR, solo_available

from ..conftest import make_strategy

pytestmark = pytest.mark.skipif(not solo_available(), reason="solo-learn is not installed (make setup-solo)")

TINY = {"proj_output_dim": 16}


def _losses():
    from avalanche_freeze.ssl.solo import import_solo

    return import_solo().losses


def test_every_adapted_method_is_registered_and_the_registry_import_needs_no_lightning_bolts():
    assert {f"solo:{m}" for m in SOLO_METHODS} <= set(available_ssl_methods())
    assert set(SOLO_METHODS) == {"simsiam", "byol", "barlowtwins", "vicreg", "simclr", "dino", "mocov2plus"}
    _losses()  # lightning-bolts is not installed: the scheduler module is registered instead
    from pl_bolts.optimizers.lr_scheduler import LinearWarmupCosineAnnealingLR as imported

    assert imported is LinearWarmupCosineAnnealingLR


def test_solo_vicreg_has_its_own_learning_rate_and_the_others_the_shared_one():
    from avalanche_freeze.backbones import CifarResNet18
    from avalanche_freeze.ssl import DEFAULT_LR, create_ssl_method, recommended_lr

    assert recommended_lr("solo:vicreg") == 0.03
    assert ExperimentConfig.from_sources(overrides=["ssl.name=solo:vicreg"]).train.lr == 0.03
    assert ExperimentConfig.from_sources(overrides=["ssl.name=solo:vicreg", "train.lr=0.05"]).train.lr == 0.05
    for method in sorted(set(SOLO_METHODS) - {"vicreg"}):
        assert recommended_lr(f"solo:{method}") == DEFAULT_LR, method
    net = CifarResNet18(width=0.125, in_channels=1)
    built = create_ssl_method("solo:vicreg", feature_dim=net.feature_dim, backbone=net, proj_dim=32,
                             proj_output_dim=16)
    assert recommended_lr(built) == 0.03  # a built method (the Python API's ssl=...) carries it too


@pytest.mark.parametrize("method", sorted(SOLO_METHODS))
def test_solo_method_trains_two_tasks_with_lump_and_freezing(tiny_bench, method):
    options = dict(TINY, **{"dino": {"num_prototypes": 32}, "mocov2plus": {"queue_size": 48}}.get(method, {}))
    freeze = CorrelationFreezePlugin(decide_every=2, tau=0.0, stability=0.0, max_frozen_share=0.3, n_samples=32,
                                     first_task=2)
    strategy = make_strategy(tiny_bench, plugins=[LUMPPlugin(mem_size=64, seed=0), freeze], ssl=f"solo:{method}",
                             ssl_options={"proj_dim": 32, "pred_dim": 8, **options})
    ssl = strategy.ssl_method
    heads_before = [p.detach().clone() for p in ssl.projector.parameters()]
    target_before = ([p.detach().clone() for p in ssl.target_backbone.parameters()]
                     if ssl.target_backbone is not None else None)
    queue_before = ssl.solo.queue.clone() if method == "mocov2plus" else None
    losses = []
    for exp in tiny_bench.benchmark.train_stream[:2]:
        strategy.train(exp)
        losses.append(float(strategy.loss))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert strategy.backbone.num_frozen_units > 0  # freezing acted during task 2
    assert any(not torch.equal(a, b) for a, b in zip(heads_before, ssl.projector.parameters()))  # solo's heads trained
    assert not hasattr(ssl.solo, "encoder") and not hasattr(ssl.solo, "classifier")  # no second network
    if target_before is not None:  # solo-learn's momentum updater moved the momentum encoder
        assert (method in ("byol", "dino", "mocov2plus")) and any(
            not torch.equal(a, b) for a, b in zip(target_before, ssl.target_backbone.parameters()))
        assert not any(p.requires_grad for p in ssl.target_backbone.parameters())
    if queue_before is not None:  # momentum keys entered the queue (48 slots, batches of 32: wrapping round)
        assert not torch.equal(queue_before, ssl.solo.queue) and int(ssl.solo.queue_ptr) != 0


def test_solo_losses_equal_lightly_losses_up_to_stated_scalings():
    from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss

    L = _losses()
    torch.manual_seed(0)
    a, b = torch.randn(16, 8), torch.randn(16, 8)
    approx = lambda x, y: float(x) == pytest.approx(float(y), rel=1e-5)  # noqa: E731
    assert approx(L.simsiam_loss_func(a, b), NegativeCosineSimilarity()(a, b))  # same
    assert approx(L.simclr_loss_func(a, b, temperature=0.5), NTXentLoss(temperature=0.5)(a, b))  # same
    # BarlowTwins: solo-learn multiplies by scale_loss (0.024 by default)
    assert approx(L.barlow_loss_func(a, b, lamb=0.005, scale_loss=0.024), 0.024 * BarlowTwinsLoss(lambda_param=0.005)(a, b))
    # VICReg: solo-learn sums the two views' variance terms, lightly averages them (mu doubles)
    assert approx(L.vicreg_loss_func(a, b, sim_loss_weight=25, var_loss_weight=25, cov_loss_weight=1),
                  VICRegLoss(lambda_param=25, mu_param=50, nu_param=1)(a, b))
    # BYOL: solo-learn's term is 2 - 2 cos, lightly's -cos
    assert approx(L.byol_loss_func(a, b), 2 + 2 * NegativeCosineSimilarity()(a, b))


def test_adapter_loss_is_solo_learns_loss_of_solo_learns_heads():
    from avalanche_freeze import CifarResNet18
    from avalanche_freeze.ssl import create_ssl_method

    torch.manual_seed(0)
    net = CifarResNet18(width=0.125, in_channels=1)
    m = create_ssl_method("solo:barlowtwins", feature_dim=net.feature_dim, backbone=net, proj_dim=32, pred_dim=8,
                          **TINY)
    f1, f2 = torch.randn(8, net.feature_dim), torch.randn(8, net.feature_dim)
    out = m.loss_from_features(f1, f2, view1=None, view2=None)
    z1, z2 = m.solo.projector(f1), m.solo.projector(f2)
    expected = _losses().barlow_loss_func(z1, z2, lamb=0.0051, scale_loss=0.024)
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-5)
    assert m.solo.projector[0].in_features == net.feature_dim  # heads sized for this backbone


def test_solo_options_are_checked_before_a_run():
    cfg = ExperimentConfig.from_sources(overrides=["ssl.name=solo:simclr", "ssl.options={temperature: 0.2}"])
    assert cfg.ssl.name == "solo:simclr"
    with pytest.raises(ConfigError, match="options.tau.*temperature"):
        ExperimentConfig.from_sources(overrides=["ssl.name=solo:simclr", "ssl.options={tau: 0.2}"])


def test_warmup_cosine_scheduler_values():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    sched = LinearWarmupCosineAnnealingLR(opt, warmup_epochs=2, max_epochs=6, warmup_start_lr=0.1, eta_min=0.0)
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.1, 0.25, 0.4])  # linear warm-up
    assert lrs[4] == pytest.approx(0.2) and lrs[6] == pytest.approx(0.0)  # cosine: half way, then eta_min


def test_moco_queue_keeps_the_newest_keys_first_in_first_out():
    from avalanche_freeze.ssl import create_ssl_method

    m = create_ssl_method("solo:mocov2plus", feature_dim=8, backbone=torch.nn.Linear(4, 8), proj_dim=16, pred_dim=8,
                          proj_output_dim=4, queue_size=6)
    keys = [torch.full((2, 4, 4), float(i)) for i in (1, 2)]  # batches of 4 into 6 slots: the second wraps
    for k in keys:
        m._enqueue(k)
    assert m.solo.queue[0, 0].tolist() == [2.0, 2.0, 1.0, 1.0, 2.0, 2.0] and int(m.solo.queue_ptr) == 2
    calls = []
    solo_enqueue = m.solo._dequeue_and_enqueue
    m.solo._dequeue_and_enqueue = lambda k: (calls.append(k.shape), solo_enqueue(k))
    m._enqueue(torch.full((2, 3, 4), 3.0))  # 3 divides 6: solo-learn's own enqueue
    assert calls == [torch.Size([2, 3, 4])]
    assert m.solo.queue[0, 0].tolist() == [2.0, 2.0, 3.0, 3.0, 3.0, 2.0] and int(m.solo.queue_ptr) == 5


def test_cassle_distils_with_solo_learns_loss(tiny_bench):
    from avalanche_freeze.plugins import CaSSLePlugin

    cassle = CaSSLePlugin()
    strategy = make_strategy(tiny_bench, plugins=[cassle], ssl="solo:simsiam",
                             ssl_options={"proj_dim": 32, "pred_dim": 8, **TINY})
    for exp in tiny_bench.benchmark.train_stream[:2]:
        strategy.train(exp)
    assert cassle.last_penalty is not None and torch.isfinite(torch.as_tensor(cassle.last_penalty))
    with pytest.raises(ConfigError, match="solo:dino has no loss between two batches"):
        dino = make_strategy(tiny_bench, ssl="solo:dino",
                             ssl_options={"proj_dim": 32, "pred_dim": 8, "proj_output_dim": 16, "num_prototypes": 32})
        dino.ssl_method.pair_loss(torch.randn(4, 32), torch.randn(4, 32))


def test_cli_runs_a_solo_method_by_name(tmp_path, fmnist_available):
    import json

    from avalanche_freeze.cli import main

    from ..conftest import TINY_SET

    args = ["run", "--quiet", "--strategy", "lump", "--output", str(tmp_path / "run")]
    for item in TINY_SET + ["data.n_experiences=2", "ssl.name=solo:byol", "ssl.options={proj_output_dim: 16}"]:
        args += ["--set", item]
    assert main(args) == 0
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert r["config"]["ssl"]["name"] == "solo:byol" and len(r["acc_matrix"]["knn_ci"]) == 2


FIXTURE = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "solo_byol_cifar.yaml"


def test_a_solo_learn_pretraining_file_is_a_configuration(tmp_path, fmnist_available, capsys):
    """solo-learn's method section maps onto ssl / train; the job's sections are named as not read; the run trains."""
    import json

    from avalanche_freeze.cli import main

    from ..conftest import TINY_SET

    cfg = ExperimentConfig.from_sources(files=[FIXTURE])
    assert (cfg.ssl.name, cfg.ssl.proj_dim, cfg.ssl.pred_dim) == ("solo:byol", 64, 16)
    assert cfg.ssl.options == {"proj_output_dim": 32, "base_tau_momentum": 0.98}
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.weight_decay, cfg.train.momentum) == (32, 0.05, 1e-5, 0.9)
    assert cfg.strategy == "lump"  # solo-learn's `strategy: ddp` (its Lightning strategy) is not read as ours
    err = capsys.readouterr().err
    assert "is a solo-learn file" in err and "not read (they describe solo-learn's job): defaults, hydra" in err
    assert "optimizer.classifier_lr" in err
    tiny = [item for item in TINY_SET if not item.startswith(("ssl.", "train.batch_size"))]
    args = ["run", "--quiet", "--strategy", "lump", "--config", str(FIXTURE), "--output", str(tmp_path / "run")]
    for item in tiny + ["data.n_experiences=2"]:
        args += ["--set", item]
    assert main(args) == 0
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert r["config"]["ssl"]["options"]["base_tau_momentum"] == 0.98 and len(r["acc_matrix"]["knn_ci"]) == 2


@pytest.mark.parametrize("change, message", [
    ({"optimizer": {"name": "lars", "lr": 1.0}}, "optimizer.name='lars' is not accepted; accepted: sgd"),
    ({"momentum": {"base_tau": 0.99, "final_tau": 1.0}}, "momentum.final_tau=1.0 is not accepted; accepted: equal to"),
    ({"method_kwargs": {"proj_output_dim": 32, "lamb": 0.1}}, "method_kwargs.lamb=0.1 is not accepted; accepted: the "
                                                              "options of solo:byol"),
    ({"method": "swav"}, "method='swav' is not accepted; accepted: solo-learn methods adapted here"),
    ({"backbone": {"name": "vit_small"}}, "backbone.name='vit_small' is not accepted; accepted: resnet18"),
    ({"optimizer": {"name": "sgd", "kwargs": {"eta": 0.02}}}, "optimizer.kwargs.eta=0.02 is not accepted"),
    ({"knn_eval2": {"enabled": True}}, "knn_eval2={'enabled': True} is not accepted; accepted: a solo-learn"),
])
def test_what_a_solo_learn_file_asks_for_without_a_counterpart_is_refused(tmp_path, change, message):
    import yaml

    raw = {**yaml.safe_load(FIXTURE.read_text()), **change}
    path = tmp_path / "solo.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_sources(files=[path])
    assert f"config file {str(path)!r} (a solo-learn file): {message}" in str(info.value)
