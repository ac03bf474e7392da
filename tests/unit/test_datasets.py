"""Datasets: clear errors for missing or malformed data, and the in-memory benchmark builder."""

import pytest
import torch
from avalanche.benchmarks.classic import SplitFMNIST

from avalanche_freeze.benchmarks import (DatasetError, ImageTensorDataset, benchmark_from_datasets, make_benchmark,
                                         torchvision_fmnist_root)

from ..conftest import write_fmnist


def test_bad_dataset_layouts(tmp_path):
    with pytest.raises(DatasetError, match="cifar-10-batches-py/data_batch_1; expected layout"):
        make_benchmark("cifar10", data_root=str(tmp_path))
    with pytest.raises(DatasetError, match="needs data_root"):
        make_benchmark("cifar100")
    with pytest.raises(DatasetError, match="tiny-imagenet-200/wnids.txt"):
        make_benchmark("tinyimagenet", data_root=str(tmp_path))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_1 is corrupt"):
        make_benchmark("cifar10", data_root=str(tmp_path))
    fm = tmp_path / "fm"
    fm.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (fm / stem).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")  # claims 5 items, has 2
    with pytest.raises(DatasetError, match="is truncated or corrupt"):
        make_benchmark("fmnist", data_root=str(fm))
    with pytest.raises(ValueError, match="unknown benchmark 'svhn'; accepted: fmnist"):
        make_benchmark("svhn")
    with pytest.raises(ValueError, match="n_experiences=3 must be >= 1 and divide"):
        make_benchmark("fmnist", n_experiences=3)


def test_missing_fmnist_names_where_it_looked(tmp_path, monkeypatch):
    import avalanche_freeze.benchmarks as b

    monkeypatch.setattr(b, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(b.DatasetError) as info:
        b.make_benchmark("fmnist", download=False)
    assert "nowhere" in str(info.value) and "apt-get install dataset-fashion-mnist" in str(info.value)
    # a data_root is used as given: no fallback to the system copy, and the missing files are named
    write_fmnist(tmp_path / "partial", labels=list(range(10)) * 2, skip="t10k-labels-idx1-ubyte")
    with pytest.raises(b.DatasetError) as info:
        b.make_benchmark("fmnist", data_root=str(tmp_path / "partial"), download=False)
    msg = str(info.value)
    assert "partial" in msg and "missing there: t10k-labels-idx1-ubyte[.gz]" in msg and "nowhere" not in msg


@pytest.mark.parametrize("labels,shape,message", [
    ([c % 10 for c in range(20)] + [12], (28, 28), "holds label 12; expected labels 0..9"),
    ([c % 9 for c in range(20)], (28, 28), "has no image of class 9"),
    ([c % 10 for c in range(20)], (784,), "holds images of shape [784]; expected 28 x 28"),
])
def test_fmnist_content_is_checked_on_load(tmp_path, labels, shape, message):
    folder = write_fmnist(tmp_path / "fm", labels=labels, shape=shape)
    with pytest.raises(DatasetError) as info:
        make_benchmark("fmnist", data_root=str(folder), download=False)
    assert message in str(info.value) and str(tmp_path) in str(info.value)


def test_tasks_too_small_for_batchnorm_are_refused(tmp_path):
    folder = write_fmnist(tmp_path / "fm", labels=[c % 10 for c in range(40)])
    with pytest.raises(ValueError, match=r"max_train_per_task=3 is not accepted; accepted: null or at least 4"):
        make_benchmark("fmnist", data_root=str(folder), max_train_per_task=3, download=False)
    bench = make_benchmark("fmnist", data_root=str(folder), max_train_per_task=4, download=False)
    assert [len(e.dataset) for e in bench.benchmark.train_stream] == [4] * 5


def test_benchmark_from_datasets_splits_classes_in_order():
    images = torch.arange(60, dtype=torch.uint8).view(60, 1, 1, 1).expand(60, 1, 4, 4).contiguous()
    data = ImageTensorDataset(images, [i % 6 for i in range(60)])
    bench = benchmark_from_datasets(data, data, name="toy", n_experiences=3, class_order=[5, 4, 3, 2, 1, 0],
                                    image_size=4, channels=1, mean=(0.5,), std=(0.5,))
    classes = [sorted({int(y) for _, y, *_ in exp.dataset}) for exp in bench.benchmark.train_stream]
    assert classes == [[4, 5], [2, 3], [0, 1]]
    x, y = bench.benchmark.train_stream[0].dataset[0][:2]
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x[0, 0, 0]) == pytest.approx(int(y) / 255)  # images stay un-augmented, scaled to [0, 1]
    with pytest.raises(ValueError, match="must be a permutation of 0..5"):
        benchmark_from_datasets(data, data, name="toy", n_experiences=3, class_order=[0, 1, 2, 3, 4, 4],
                                image_size=4, channels=1, mean=(0.5,), std=(0.5,))


def test_cifar_labels_out_of_range_are_named(tmp_path):
    import pickle

    import numpy as np

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = list(range(10)) + ([12] if name == "data_batch_3" else [])
        data = np.zeros((len(labels), 3 * 32 * 32), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with pytest.raises(DatasetError, match=r"data_batch_3 holds label 12; expected labels 0..9"):
        make_benchmark("cifar10", data_root=str(tmp_path))


def test_tiny_imagenet_with_too_few_classes_is_named(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    (root / "wnids.txt").write_text("\n".join(f"n{i:08d}" for i in range(5)))
    (root / "val" / "val_annotations.txt").write_text("")
    with pytest.raises(DatasetError, match=r"wnids.txt lists 5 classes; the benchmark needs 100"):
        make_benchmark("tinyimagenet", data_root=str(tmp_path))


def test_augmentation_follows_the_reference_per_image_size():
    from avalanche_freeze.augmentations import TwoViewAugmentation

    def blurs(size):
        aug = TwoViewAugmentation(image_size=size, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
        return [m for m in aug.strong if type(m).__name__ == "RandomGaussianBlur"]

    assert blurs(32) == []  # CIFAR: no blur
    (blur,) = blurs(64)  # Tiny-ImageNet: kernel 64 // 20 * 2 + 1 = 7, p = 0.5
    assert blur.p == 0.5 and tuple(blur.flags["kernel_size"]) == (7, 7)
    aug = TwoViewAugmentation(image_size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, brightness=0.8, hue=0.2)
    jitter = aug.strong[2]
    assert jitter.brightness == pytest.approx(0.8) and jitter.hue == pytest.approx(0.2)


def test_avalanche_s_own_split_fmnist_builds_offline_from_the_embedded_copy(tmp_path, fmnist_available, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("torchvision tried to download")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", no_download)
    root = torchvision_fmnist_root(tmp_path / "data")
    assert sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir()) == [
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    bench = SplitFMNIST(n_experiences=5, dataset_root=root, seed=0)
    assert sum(len(e.dataset) for e in bench.train_stream) == 60000
    assert sum(len(e.dataset) for e in bench.test_stream) == 10000
    assert torchvision_fmnist_root(tmp_path / "data") == root  # a second call keeps what is there
    with pytest.raises(DatasetError, match="Fashion-MNIST not found in"):
        torchvision_fmnist_root(tmp_path / "other", source=tmp_path / "empty")
