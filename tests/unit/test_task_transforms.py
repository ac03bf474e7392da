"""Per-task transforms: deterministic per task, the same on training and evaluation images, applied
to the data (so before any augmentation), checked like every other option."""

import pytest
import torch

from avalanche_freeze.benchmarks import DataConfig, ImageTensorDataset, benchmark_from_datasets
from avalanche_freeze.task_transforms import TASK_TRANSFORMS, apply_task_transforms, task_transform
from avalanche_freeze.validation import ConfigError


def _data(n=40, size=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=gen)
    return ImageTensorDataset(images, [i % 4 for i in range(n)])


@pytest.mark.parametrize("name", TASK_TRANSFORMS)
def test_every_transform_is_deterministic_per_task_and_keeps_images_in_range(name):
    x = torch.rand(6, 1, 12, 12)
    first, again = task_transform(name, task=2, seed=5)(x), task_transform(name, task=2, seed=5)(x)
    assert torch.equal(first, again) and first.shape == x.shape
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    if name == "permute":  # a pixel permutation: the same values, moved; another task or seed moves them elsewhere
        assert torch.equal(first.flatten(1).sort(1).values, x.flatten(1).sort(1).values) and not torch.equal(first, x)
        assert not torch.equal(first, task_transform(name, task=3, seed=5)(x))
        assert not torch.equal(first, task_transform(name, task=2, seed=6)(x))
        assert torch.equal(first[0], task_transform(name, task=2, seed=5)(x[:1])[0])  # one permutation per task
    if name == "invert":
        assert torch.allclose(first, 1 - x)
    if name == "highpass":  # a constant image has no detail: it becomes the grey background
        assert torch.allclose(task_transform(name, task=0, seed=0)(torch.full((1, 1, 12, 12), 0.8)),
                              torch.full((1, 1, 12, 12), 0.5), atol=1e-5)
    if name == "none":
        assert torch.equal(first, x)


def test_a_tasks_training_and_evaluation_images_are_transformed_alike_before_augmentation():
    data = _data()
    plain = benchmark_from_datasets(data, data, name="toy", n_experiences=2, class_order=[0, 1, 2, 3],
                                    image_size=8, channels=1, mean=(0.5,), std=(0.25,))
    shifted = benchmark_from_datasets(data, data, name="toy", n_experiences=2, class_order=[0, 1, 2, 3],
                                      image_size=8, channels=1, mean=(0.5,), std=(0.25,),
                                      task_transforms=["none", "permute"], seed=3)
    permute = task_transform("permute", task=1, seed=3)
    for stream in ("train_stream", "test_stream"):
        before, after = (getattr(b.benchmark, stream) for b in (plain, shifted))
        for task in range(2):
            x0 = torch.stack([before[task].dataset[i][0] for i in range(len(before[task].dataset))])
            x1 = torch.stack([after[task].dataset[i][0] for i in range(len(after[task].dataset))])
            # the dataset items, which the strategy augments, are already transformed
            expected = x0 if task == 0 else (permute(x0) * 255).round() / 255
            assert torch.allclose(x1, expected, atol=1e-6), (stream, task)
    # a callable from Python, per task
    mirrored = benchmark_from_datasets(data, data, name="toy", n_experiences=2, class_order=[0, 1, 2, 3],
                                       image_size=8, channels=1, mean=(0.5,), std=(0.25,),
                                       task_transforms=[lambda x: x.flip(-1), "none"])
    item, original = mirrored.benchmark.train_stream[0].dataset[0][0], plain.benchmark.train_stream[0].dataset[0][0]
    assert torch.equal(item, original.flip(-1))


def test_bad_task_transforms_are_refused_by_name():
    with pytest.raises(ConfigError, match="task_transforms='swirl' is not accepted; accepted: none, permute, invert"):
        DataConfig(task_transforms=["none", "swirl"])
    with pytest.raises(ConfigError, match=r"task_transforms=\['none', 'permute'\] is not accepted; accepted: one "
                                          r"transform per task \(n_experiences=5\)"):
        DataConfig(n_experiences=5, task_transforms=["none", "permute"])
    data = _data()
    with pytest.raises(ConfigError, match=r"one transform per task \(2 tasks\) or none"):
        benchmark_from_datasets(data, data, name="toy", n_experiences=2, class_order=[0, 1, 2, 3], image_size=8,
                                channels=1, mean=(0.5,), std=(0.25,), task_transforms=["none"])
    with pytest.raises(ConfigError, match=r"task transform of task 1 returned torch.Size\(\[1\]\)"):
        apply_task_transforms(data.images, [0] * len(data), [lambda x: x.mean().reshape(1)], seed=0)
