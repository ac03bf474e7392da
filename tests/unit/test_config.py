"""The configuration: nested sections, dotted overrides, deprecated flat keys, bad values and files."""

import dataclasses
import inspect
import warnings

import pytest

from avalanche_freeze.run.config import DEPRECATED_KEYS, ConfigError, ExperimentConfig
from avalanche_freeze.plugins import (
    CaSSLePlugin,
    CorrelationFreezePlugin,
    DERPlugin,
    LUMPPlugin,
    PFRPlugin,
    SelfSupervisedEWCPlugin,
    SIPlugin,
)
from avalanche_freeze.run.recipes import available_strategies, build_plugins, check_config, recipe_path, strategy_kind

from ..conftest import REPO

ROOT = REPO


def test_sections_merge_defaults_files_and_dotted_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochs: 7\nlump:\n  mem_size: 64\n")
    cfg = ExperimentConfig.from_sources(files=[config], overrides=["lump.alpha=0.2", "train.lr=3e-2",
                                                                   "eval.probes=knn,linear"])
    assert (cfg.train.epochs, cfg.lump.mem_size, cfg.lump.alpha, cfg.train.lr) == (7, 64, 0.2, 0.03)
    assert cfg.eval.probes == ["knn", "linear"]
    assert cfg.train.batch_size == 128 and cfg.freeze.tau == 0.8  # untouched keys keep their defaults
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg  # to_dict round-trips


def test_every_plugin_is_built_from_its_section_with_the_same_defaults():
    """One home per setting: a plugin's options and defaults are its section's, written once (the
    constructor lists none of them), and a recipe hands the plugin its section whole."""
    pairs = [(LUMPPlugin, "lump", "mem_size", 300), (CorrelationFreezePlugin, "freeze", "decide_every", 8),
             (SIPlugin, "si", "c", 1.0), (DERPlugin, "der", "alpha", 0.2), (CaSSLePlugin, "cassle", "lam", 0.5),
             (PFRPlugin, "pfr", "lam", 0.5), (SelfSupervisedEWCPlugin, "ewc", "ewc_lambda", 10.0)]
    cfg = ExperimentConfig()
    for plugin_cls, section, name, value in pairs:
        default = getattr(cfg, section)
        assert plugin_cls().config == default, section
        params = inspect.signature(plugin_cls).parameters
        assert not {f.name for f in dataclasses.fields(default)} & set(params), section
        changed = plugin_cls(**{name: value})
        assert getattr(changed.config, name) == value != getattr(default, name)
        assert isinstance(changed.config, type(default))
        first = dataclasses.fields(default)[0].name
        with pytest.raises(ConfigError, match=f"{plugin_cls.__name__} option 'bogus' is not accepted; accepted: {first}"):
            plugin_cls(bogus=1)
        with pytest.raises(ConfigError, match="not both"):
            plugin_cls(default, **{name: value})
    cfg = ExperimentConfig.from_sources(overrides=["strategy=lump_freeze", "freeze.representation=channel",
                                                   "freeze.center=true", "lump.mem_size=17"])
    plugins = build_plugins(cfg)
    assert plugins["freeze"].config is cfg.freeze and plugins["lump"].config is cfg.lump
    assert plugins["freeze"].config.representation == "channel" and plugins["freeze"].config.center is True
    assert plugins["lump"].buffer.capacity == 17


def test_the_python_api_and_the_command_line_share_training_defaults():
    """``SelfSupervisedStrategy`` built without training options trains as ``TrainConfig`` says."""
    from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy
    from avalanche_freeze.augmentations import TwoViewAugmentation
    from avalanche_freeze.strategy import TrainConfig

    train = TrainConfig()
    params = inspect.signature(SelfSupervisedStrategy).parameters
    for key, option in [("lr", "lr"), ("momentum", "momentum"), ("weight_decay", "weight_decay"),
                        ("lr_schedule", "lr_schedule"), ("batch_size", "train_mb_size"), ("epochs", "train_epochs"),
                        ("precision", "precision"), ("channels_last", "channels_last")]:
        assert params[option].default == getattr(train, key), option
    strategy = SelfSupervisedStrategy(model=CifarResNet18(width=0.125, in_channels=1),
                                      augmentation=TwoViewAugmentation(image_size=28, channels=1, mean=[0.5], std=[0.5]))
    group = strategy.optimizer.param_groups[0]
    assert train.lr is None and ExperimentConfig().train.lr == 0.06  # unset: SimSiam's rate, written down
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.06, train.momentum, train.weight_decay)
    assert strategy.train_mb_size == train.batch_size and strategy.train_epochs == train.epochs


def test_deprecated_flat_keys_still_work_with_a_warning(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("freeze_tau: 0.75\nssl: barlowtwins\nwandb: false\n")
    with pytest.warns(FutureWarning, match="'freeze_tau' is deprecated; use 'freeze.tau'"):
        cfg = ExperimentConfig.from_sources(files=[old], overrides=["lump_mem_size=32", "epochs=2"])
    assert (cfg.freeze.tau, cfg.ssl.name, cfg.lump.mem_size, cfg.train.epochs) == (0.75, "barlowtwins", 32, 2)
    assert set(DEPRECATED_KEYS.values()) <= set(ExperimentConfig.keys())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new keys do not warn
        ExperimentConfig.from_sources(overrides=["freeze.tau=0.75", "ssl.name=barlowtwins"])


def test_a_registered_ssl_method_is_accepted_by_name():
    from avalanche_freeze.ssl import SimSiam, register_ssl_method

    with pytest.raises(ConfigError, match="ssl.name='tiny_simsiam' is not accepted"):
        ExperimentConfig.from_sources(overrides=["ssl.name=tiny_simsiam"])
    register_ssl_method("tiny_simsiam", SimSiam)
    assert ExperimentConfig.from_sources(overrides=["ssl.name=tiny_simsiam"]).ssl.name == "tiny_simsiam"


def test_an_unset_learning_rate_is_the_ssl_methods_own(monkeypatch):
    """``train.lr`` unset (or null) takes the method's ``recommended_lr``; a set one wins; the Python API agrees."""
    from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy
    from avalanche_freeze.augmentations import TwoViewAugmentation
    from avalanche_freeze.ssl import DEFAULT_LR, SimSiam, base, recommended_lr

    class SlowSimSiam(SimSiam):
        recommended_lr = 0.015

    def slow_factory(**kwargs):
        return SlowSimSiam(**kwargs)

    slow_factory.recommended_lr = 0.02  # a factory function carries the attribute itself
    monkeypatch.setitem(base._REGISTRY, "slow_simsiam", SlowSimSiam)
    monkeypatch.setitem(base._REGISTRY, "slow_factory", slow_factory)
    assert recommended_lr("simsiam") == DEFAULT_LR == 0.06
    assert ExperimentConfig.from_sources(overrides=["ssl.name=vicreg"]).train.lr == recommended_lr("vicreg") == 0.045
    assert recommended_lr("slow_simsiam") == 0.015 and recommended_lr("slow_factory") == 0.02
    for sets, lr in [(["ssl.name=slow_simsiam"], 0.015), (["ssl.name=slow_simsiam", "train.lr=null"], 0.015),
                     (["ssl.name=slow_simsiam", "train.lr=0.1"], 0.1), (["ssl.name=slow_factory"], 0.02),
                     (["train.lr=null"], 0.06)]:
        cfg = ExperimentConfig.from_sources(overrides=sets)
        assert cfg.train.lr == lr, sets
        assert ExperimentConfig.from_dict(cfg.to_dict()).train.lr == lr  # the saved config names the rate
    augmentation = TwoViewAugmentation(image_size=28, channels=1, mean=[0.5], std=[0.5])
    for ssl, lr, expected in [("slow_simsiam", None, 0.015), ("slow_simsiam", 0.2, 0.2),
                              (SlowSimSiam(feature_dim=64, proj_dim=8, pred_dim=4), None, 0.015)]:
        strategy = SelfSupervisedStrategy(model=CifarResNet18(width=0.125, in_channels=1), augmentation=augmentation,
                                          ssl=ssl, lr=lr, evaluator=None)
        assert strategy.optimizer.param_groups[0]["lr"] == expected


BAD_CONFIGS = [
    (["ssl.name=moco"], "ssl.name='moco' is not accepted; accepted: barlowtwins, byol, "),
    (["strategy=ewc2"], "strategy='ewc2' is not accepted; accepted: finetune"),
    (["data.benchmark=mnist"], "data.benchmark='mnist' is not accepted; accepted: fmnist, cifar10"),
    (["train.epochs=0"], "train.epochs=0 is not accepted; accepted: an integer >= 1"),
    (["train.epochs=two"], "train.epochs='two' is not accepted; accepted: an integer"),
    (["train.batch_size=1"], "train.batch_size=1 is not accepted; accepted: an integer >= 2"),
    (["train.lr=-0.1"], "train.lr=-0.1 is not accepted; accepted: a finite number > 0"),
    (["train.lr=nan"], "train.lr=nan is not accepted; accepted: a finite number > 0"),
    (["train.lr=fast"], "train.lr='fast' is not accepted; accepted: a number"),
    (["model.width=0"], "model.width=0.0 is not accepted"),
    (["model.width=inf"], "model.width=inf is not accepted"),
    (["freeze.tau=1.5"], "freeze.tau=1.5 is not accepted; accepted: a finite number >= 0 and <= 1"),
    (["freeze.measure=mi"], "freeze.measure='mi' is not accepted; accepted: gradient, subspace, cka"),
    (["freeze.granularity=layer"], "freeze.granularity='layer' is not accepted; accepted: block, stage"),
    (["freeze.representation=pixels"], "freeze.representation='pixels' is not accepted; accepted: flatten, channel"),
    (["eval.probes=knn,svm"], "eval.probes=['knn', 'svm'] is not accepted"),
    (["eval.probes=knn,knn"], "eval.probes=['knn', 'knn'] is not accepted; accepted: a non-empty list of distinct"),
    (["device=tpu"], "device='tpu' is not accepted; accepted: cpu, cuda, cuda:N"),
    (["unknown_key=1"], "--set: unknown key 'unknown_key'; accepted keys: strategy, seed"),
    (["lump.memsize=1"], "--set: unknown key 'lump.memsize'"),
    (["lump=3"], "lump=3 is not accepted; accepted: a mapping of lump.* keys"),
    (["epochs"], "--set 'epochs' is not of the form key=value"),
    (["data.shuffle_classes=maybe"], "data.shuffle_classes='maybe' is not accepted; accepted: true or false"),
    (["data.root=/nonexistent/dir"], "data.root='/nonexistent/dir' is not accepted; accepted: an existing directory"),
    (["data.max_train_per_task=0"], "data.max_train_per_task=0 is not accepted; accepted: an integer >= 1 or null"),
    (["train.epochs=null"], "train.epochs=None is not accepted; accepted: an integer"),
    (["health.on_nan=ignore"], "health.on_nan='ignore' is not accepted; accepted: stop, warn"),
    (["lump.mem_size=-1"], "lump.mem_size=-1 is not accepted; accepted: an integer >= 0"),
    (["lump.alpha=inf"], "lump.alpha=inf is not accepted"),
    (["train.lr_schedule=step"], "train.lr_schedule='step' is not accepted; accepted: none, cosine"),
    (["si.xi=0"], "si.xi=0.0 is not accepted; accepted: a finite number > 0"),
    (["der.alpha=-0.5"], "der.alpha=-0.5 is not accepted; accepted: a finite number >= 0"),
    (["cassle.lam=strong"], "cassle.lam='strong' is not accepted; accepted: a number"),
    (["seed=-1"], "seed=-1 is not accepted; accepted: an integer >= 0"),
    (["ssl.options.temperature=0.2"], "ssl.options.temperature=0.2 is not accepted; accepted: options of 'simsiam'"),
]


@pytest.mark.parametrize("overrides,message", BAD_CONFIGS, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_bad_config_values(overrides, message):
    """What the CLI, grids and runs check: the schema, then the recipes' checks."""
    with pytest.raises(ConfigError) as info:
        check_config(ExperimentConfig.from_sources(overrides=overrides))
    assert message in str(info.value)


def test_bad_config_files(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: [1,\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        ExperimentConfig.from_sources(files=[bad_yaml])
    listing = tmp_path / "list.yaml"
    listing.write_text("- epochs\n")
    with pytest.raises(ConfigError, match="must contain a mapping"):
        ExperimentConfig.from_sources(files=[listing])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"config file '.*unknown.yaml': unknown key 'train.epoch'"):
        ExperimentConfig.from_sources(files=[unknown])
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00epochs")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        ExperimentConfig.from_sources(files=[binary])
    with pytest.raises(ConfigError, match="does not exist"):
        ExperimentConfig.from_sources(files=[tmp_path / "missing.yaml"])


@pytest.mark.parametrize("path", sorted((ROOT / "experiments" / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_experiment_configs_are_valid(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # shipped configs use the current keys
        cfg = ExperimentConfig.from_sources(files=[path])
    assert path.stem.startswith(cfg.data.benchmark)


def test_every_registered_strategy_ships_its_recipe():
    shipped = sorted(p.stem for p in (ROOT / "strategies").glob("*.yaml"))
    # Avalanche's supervised strategies have no recipe file: DER.yaml next to der.yaml would
    # collide on case-insensitive file systems, and they take no plugin components
    assert sorted(s for s in available_strategies() if strategy_kind(s) != "supervised") == shipped
    for name in shipped:
        path = recipe_path(name)
        assert path is not None and path.name == f"{name}.yaml"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ExperimentConfig.from_sources(files=[path]).strategy == name


def test_device_bound_options_and_supervised_strategies():
    from avalanche_freeze.run.experiment import config_differences

    with pytest.raises(ConfigError, match=r"train.data_on_device=True is not accepted.*Replay"):
        check_config(ExperimentConfig.from_sources(overrides=["strategy=Replay", "train.data_on_device=true"]))
    check_config(ExperimentConfig.from_sources(overrides=["strategy=lump", "train.data_on_device=true"]))
    # a supervised strategy reads the light view: the backend changes its results, the strong views' options do not
    base = ExperimentConfig.from_sources(overrides=["strategy=Replay"]).to_dict()
    other = ExperimentConfig.from_sources(overrides=["strategy=Replay", "augment.backend=batched",
                                                     "augment.min_scale=0.5"]).to_dict()
    assert config_differences(base, other) == ["augment.backend"]
    ssl = [ExperimentConfig.from_sources(overrides=["strategy=lump", *extra]).to_dict()
           for extra in ([], ["augment.min_scale=0.5", "health.check_every=4"])]
    assert config_differences(*ssl) == ["augment.min_scale"]  # the health check's reading rate changes nothing
