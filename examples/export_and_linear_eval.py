"""Take a trained backbone away and evaluate it with a linear classifier of your own.

Trains SimSiam + LUMP on Split Fashion-MNIST, exports the backbone with ``save_backbone`` (a plain
``torch.save`` state dict and a JSON description), then, as a user would in another project,
reads the file with ``torch.load(..., weights_only=True)``, rebuilds the network with
``load_backbone`` and trains a linear classifier on its frozen features over all ten classes.
For a run of the command line, ``avalanche-freeze export RUN_DIR`` writes the same two files.

    python examples/export_and_linear_eval.py          # about 2 minutes on 2 CPU cores
    python examples/export_and_linear_eval.py --tiny   # a few seconds (what the test suite runs)
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch

from avalanche_freeze import CifarResNet18, SelfSupervisedStrategy, load_backbone, make_benchmark, save_backbone
from avalanche_freeze.plugins import LUMPPlugin


def train_and_export(tiny: bool, path: Path):
    bench = make_benchmark("fmnist", n_experiences=5, seed=0,
                           max_train_per_task=128 if tiny else 2000, max_test_per_task=64 if tiny else 1000)
    strategy = SelfSupervisedStrategy(model=CifarResNet18(width=0.125 if tiny else 0.25, in_channels=1),
                                      augmentation=bench.augmentation, ssl="simsiam", plugins=[LUMPPlugin()],
                                      train_mb_size=32 if tiny else 128, train_epochs=1 if tiny else 3, evaluator=None)
    for exp in bench.benchmark.train_stream:
        strategy.train(exp)
    aug = bench.augmentation
    save_backbone(strategy.backbone.eval(), path, image_size=aug.image_size, mean=aug.mean.flatten().tolist(),
                  std=aug.std.flatten().tolist())
    return bench


def images_and_labels(stream):
    data = [exp.dataset.eval() for exp in stream]
    x = torch.stack([d[i][0] for d in data for i in range(len(d))])
    y = torch.tensor([int(d[i][1]) for d in data for i in range(len(d))])
    return x, y


@torch.no_grad()
def features(backbone, description, x):
    mean = torch.tensor(description["normalization"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(description["normalization"]["std"]).view(1, -1, 1, 1)
    return torch.cat([backbone((batch - mean) / std) for batch in x.split(512)])


def main(tiny: bool) -> None:
    path = Path(tempfile.mkdtemp()) / "backbone.pt"
    bench = train_and_export(tiny, path)
    print(f"exported {path} and {path.with_suffix('.json')}")

    # --- what a user does with the two files, in any project
    state = torch.load(path, weights_only=True)  # tensors only: no code runs
    description = json.loads(path.with_suffix(".json").read_text())
    backbone = load_backbone(path).eval()
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in state.items())  # the same weights
    train_x, train_y = images_and_labels(bench.benchmark.train_stream)
    test_x, test_y = images_and_labels(bench.benchmark.test_stream)
    train_f, test_f = features(backbone, description, train_x), features(backbone, description, test_x)
    classifier = torch.nn.Linear(train_f.shape[1], int(train_y.max()) + 1)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20 if tiny else 100):
        for idx in torch.randperm(len(train_f), generator=generator).split(256):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(classifier(train_f[idx]), train_y[idx]).backward()
            optimizer.step()
    accuracy = (classifier(test_f).argmax(1) == test_y).float().mean().item()
    print(f"{description['architecture']} width {description['width']}: linear accuracy over all "
          f"{len(set(test_y.tolist()))} classes {100 * accuracy:.1f} % on {len(test_y)} test images")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny settings: a few seconds")
    main(parser.parse_args().tiny)
