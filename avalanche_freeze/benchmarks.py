"""Class-incremental image benchmarks for self-supervised continual learning.

Every benchmark is an Avalanche class-incremental benchmark (``nc_benchmark``)
whose datasets yield un-augmented ``float`` image tensors in ``[0, 1]``; the
strategy applies the two-view augmentation on the device. Available:

===================  ============================  ======================================
name                 default split                 data
===================  ============================  ======================================
``fmnist``           5 tasks x 2 classes           embedded: Fashion-MNIST (see below)
``cifar10``          5 tasks x 2 classes           ``<data_root>/cifar-10-batches-py/``
``cifar100``         20 tasks x 5 classes          ``<data_root>/cifar-100-python/``
``tinyimagenet``     20 tasks x 5 (classes 0-99)   ``<data_root>/tiny-imagenet-200/``
===================  ============================  ======================================

Fashion-MNIST is looked for, in order, in ``data_root`` (the four IDX files,
gzipped or not, directly or under ``FashionMNIST/raw``), in Debian's
``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``),
then fetched with torchvision's downloader into ``data_root``.

Example:
    >>> bench = make_benchmark("fmnist", max_train_per_task=100, max_test_per_task=50)  # doctest: +SKIP
    >>> len(bench.benchmark.train_stream)  # doctest: +SKIP
    5
"""

from __future__ import annotations

import gzip
import pickle
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .augmentations import TwoViewAugmentation
from .task_transforms import TASK_TRANSFORMS, TaskTransform, apply_task_transforms
from .validation import check_choice, check_number, not_accepted

__all__ = [
    "BENCHMARKS",
    "DEBIAN_FASHION_MNIST",
    "DataConfig",
    "DatasetError",
    "EVAL_SPLITS",
    "ImageTensorDataset",
    "SSLBenchmark",
    "benchmark_from_datasets",
    "make_benchmark",
    "torchvision_fmnist_root",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


#: Accepted values of ``eval_split``.
EVAL_SPLITS = ("test", "validation")


class DatasetError(RuntimeError):
    """A dataset directory is missing, incomplete or corrupt."""


@dataclass(frozen=True)
class _Spec:
    image_size: int
    channels: int
    num_classes: int
    default_experiences: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    layout: str


BENCHMARKS: Dict[str, _Spec] = {
    "fmnist": _Spec(28, 1, 10, 5, (0.2860,), (0.3530,),
                    "the four Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], ...)"),
    "cifar10": _Spec(32, 3, 10, 5, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                     "<data_root>/cifar-10-batches-py/{data_batch_1..5,test_batch} (torchvision layout)"),
    "cifar100": _Spec(32, 3, 100, 20, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                      "<data_root>/cifar-100-python/{train,test} (torchvision layout)"),
    "tinyimagenet": _Spec(64, 3, 100, 20, (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262),
                          "<data_root>/tiny-imagenet-200/{wnids.txt,train/<wnid>/images/*.JPEG,"
                          "val/images/*.JPEG,val/val_annotations.txt}"),
}


@dataclass
class DataConfig:
    """The ``data`` configuration section (defaults: a quick run on the embedded benchmark).

    Attributes:
        benchmark: one of :data:`BENCHMARKS` (``fmnist``).
        root: directory with the data in torchvision's layout (``None``: Fashion-MNIST's system copy).
        n_experiences: number of tasks (``None``: 5 for 10-class sets, 20 otherwise).
        shuffle_classes: shuffle the class order with the run's seed (False).
        max_train_per_task: cap on training images per task, class-balanced (2000; ``None``: all).
        max_test_per_task: cap on test images per task, class-balanced (1000; ``None``: all).
        eval_split: what the evaluation stream holds: ``test`` (the test set, default) or
            ``validation``: training images the run does not train on (as many per class as the
            test split would have), for choosing thresholds and defaults without the test set.
        task_transforms: one transform per task (:mod:`~avalanche_freeze.task_transforms`:
            ``none``, ``permute``, ``invert``, ``highpass``), applied to all of a task's images;
            empty (default): none.
    """

    benchmark: str = "fmnist"
    root: Optional[str] = None
    n_experiences: Optional[int] = None
    shuffle_classes: bool = False
    max_train_per_task: Optional[int] = 2000
    max_test_per_task: Optional[int] = 1000
    eval_split: str = "test"
    task_transforms: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("benchmark", self.benchmark, BENCHMARKS)
        check_choice("eval_split", self.eval_split, EVAL_SPLITS)
        for name in self.task_transforms:
            check_choice("task_transforms", name, TASK_TRANSFORMS)
        if self.task_transforms and self.n_experiences is not None and len(self.task_transforms) != self.n_experiences:
            raise not_accepted("task_transforms", list(self.task_transforms),
                               f"one transform per task (n_experiences={self.n_experiences}) or none")
        if self.root is not None and (not str(self.root).strip() or not Path(self.root).is_dir()):
            raise not_accepted("root", self.root, "an existing directory or null")
        for key in ("n_experiences", "max_train_per_task", "max_test_per_task"):
            check_number(key, getattr(self, key), at_least=1, integer=True, optional=True)
        classes = BENCHMARKS[self.benchmark].num_classes
        if self.n_experiences is not None and classes % self.n_experiences:
            raise not_accepted("n_experiences", self.n_experiences,
                               f"a divisor of the {classes} classes of {self.benchmark!r} or null")


class ImageTensorDataset(Dataset):
    """Images kept as one ``uint8`` tensor ``[N, C, H, W]``; items are ``(float image, label)``.

    Args:
        images: ``uint8`` tensor of shape ``[N, C, H, W]``.
        targets: ``N`` integer class labels.
    """

    def __init__(self, images: Tensor, targets: Sequence[int]) -> None:
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be a uint8 tensor [N, C, H, W]; got {images.dtype} {tuple(images.shape)}")
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.images[index].float().div_(255.0), self.targets[index]


@dataclass
class SSLBenchmark:
    """An Avalanche benchmark together with what the strategy needs to train on it.

    Attributes:
        name: benchmark name.
        benchmark: the Avalanche class-incremental benchmark.
        augmentation: its two-view augmentation (image size, channels, normalisation).
        num_classes: number of classes in the benchmark.
        in_channels: image channels, for building the backbone.
        joint_train_stream: the same training images as one experience (joint training, the
            upper bound); ``None`` when the benchmark was not built from datasets.
    """

    name: str
    benchmark: object
    augmentation: TwoViewAugmentation
    num_classes: int
    in_channels: int
    joint_train_stream: Optional[object] = None


# --------------------------------------------------------------------- loaders
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad header)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DatasetError(f"{path} is truncated or corrupt: {len(data) - offset} bytes of data, expected {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_fmnist_dir(candidates: Sequence[Path]) -> Optional[Dict[str, Path]]:
    for base in candidates:
        for d in (base, base / "FashionMNIST" / "raw"):
            found = {}
            for key, stem in FMNIST_FILES.items():
                for name in (stem + ".gz", stem):
                    if (d / name).is_file():
                        found[key] = d / name
                        break
            if len(found) == 4:
                return found
    return None


def torchvision_fmnist_root(target: Union[str, Path], source: Union[str, Path, None] = None) -> Path:
    """Lay Fashion-MNIST out under ``target`` the way torchvision's ``FashionMNIST`` reads it
    (``TARGET/FashionMNIST/raw/``, decompressed IDX files), from the embedded copy (Debian's
    ``dataset-fashion-mnist``) or ``source``; returns ``target``.

    Debian's ``.gz`` files hold the same images as torchvision's but compress differently, so their
    checksums differ and torchvision would download again; decompressed files are read without a
    checksum. This makes Avalanche's own benchmark work offline::

        from avalanche.benchmarks.classic import SplitFMNIST
        bench = SplitFMNIST(n_experiences=5, dataset_root=torchvision_fmnist_root("data"))

    Files already there are kept. Raises :class:`DatasetError` when no complete copy is found.
    """
    files = _find_fmnist_dir([Path(source)] if source is not None else [DEBIAN_FASHION_MNIST])
    if files is None:
        where = source if source is not None else DEBIAN_FASHION_MNIST
        raise DatasetError(f"Fashion-MNIST not found in {where} (install it with `apt-get install "
                           "dataset-fashion-mnist`, or pass source=); expected " + BENCHMARKS["fmnist"].layout)
    raw = Path(target) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key, path in files.items():
        dest = raw / FMNIST_FILES[key]
        if dest.is_file():
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return Path(target)


def _load_fmnist(data_root: Optional[str], download: bool) -> Tuple[ImageTensorDataset, ImageTensorDataset]:
    # a data_root is used as given: no silent fallback to another copy
    candidates = [Path(data_root)] if data_root else [DEBIAN_FASHION_MNIST]
    files = _find_fmnist_dir(candidates)
    tried_download = ""
    if files is None and download:
        root = Path(data_root or Path.home() / ".cache" / "avalanche_freeze")
        created = [p for p in (root, root / "FashionMNIST") if not p.exists()]
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(root), train=True, download=True)
            FashionMNIST(str(root), train=False, download=True)
            files = _find_fmnist_dir([root])
        except Exception as exc:  # network errors take many forms
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            tried_download = f" (download into {root} failed: {type(exc).__name__}: {first_line})"
            for folder in reversed(created):  # leave nothing of the failed attempt behind
                shutil.rmtree(folder, ignore_errors=True)
    if files is None:
        where = (f"data_root={data_root!r} (missing there: {', '.join(_missing_fmnist_files(Path(data_root)))})"
                 if data_root else
                 f"{DEBIAN_FASHION_MNIST} (install it with `apt-get install dataset-fashion-mnist`, or set data.root)")
        raise DatasetError(
            f"Fashion-MNIST not found. Looked in {where}; torchvision download" + (tried_download or " (disabled)")
            + ". Expected " + BENCHMARKS["fmnist"].layout
        )
    arrays = {k: _read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_file, label_file = files[f"{split}_images"], files[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DatasetError(f"{image_file} holds images of shape {list(images.shape[1:])}; expected 28 x 28 "
                               "(an IDX file of dimensions [N, 28, 28])")
        if labels.ndim != 1:
            raise DatasetError(f"{label_file} holds an array of shape {list(labels.shape)}; expected one label per image")
        if len(images) != len(labels):
            raise DatasetError(f"{image_file} and {label_file} have different lengths ({len(images)} vs {len(labels)})")
        _check_labels(labels.tolist(), 10, label_file)
    return tuple(  # type: ignore[return-value]
        ImageTensorDataset(torch.from_numpy(arrays[f"{s}_images"].copy()).unsqueeze(1), arrays[f"{s}_labels"].tolist())
        for s in ("train", "test")
    )


def _missing_fmnist_files(folder: Path) -> List[str]:
    return [stem + "[.gz]" for stem in FMNIST_FILES.values()
            if not any((d / name).is_file() for d in (folder, folder / "FashionMNIST" / "raw")
                       for name in (stem, stem + ".gz"))]


def _check_labels(labels: Sequence[int], num_classes: int, source: Path) -> None:
    """Every label in ``0..num_classes-1`` (a :class:`DatasetError` naming the file and label otherwise)."""
    bad = next((y for y in labels if not 0 <= y < num_classes), None)
    if bad is not None:
        raise DatasetError(f"{source} holds label {bad}; expected labels 0..{num_classes - 1}")


def _load_cifar(name: str, data_root: Optional[str]) -> Tuple[ImageTensorDataset, ImageTensorDataset]:
    spec = BENCHMARKS[name]
    if not data_root:
        raise DatasetError(f"benchmark {name!r} needs data_root; expected layout: {spec.layout}")
    folder = Path(data_root) / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    files = ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]) if name == "cifar10" else (["train"], ["test"])
    out = []
    for split_files in files:
        images, labels = [], []
        for fname in split_files:
            path = folder / fname
            if not path.is_file():
                raise DatasetError(f"missing {path}; expected layout: {spec.layout}")
            try:
                with open(path, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
                data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                lab = entry["labels"] if "labels" in entry else entry["fine_labels"]
            except Exception as exc:
                raise DatasetError(f"{path} is corrupt or not a CIFAR batch file: {exc}") from exc
            if len(lab) != len(data):
                raise DatasetError(f"{path} holds {len(data)} images but {len(lab)} labels")
            _check_labels(list(lab), spec.num_classes, path)
            images.append(data)
            labels.extend(lab)
        out.append(ImageTensorDataset(torch.from_numpy(np.concatenate(images)), labels))
    return out[0], out[1]


def _load_tinyimagenet(data_root: Optional[str], num_classes: int) -> Tuple[ImageTensorDataset, ImageTensorDataset]:
    from PIL import Image

    spec = BENCHMARKS["tinyimagenet"]
    if not data_root:
        raise DatasetError(f"benchmark 'tinyimagenet' needs data_root; expected layout: {spec.layout}")
    root = Path(data_root) / "tiny-imagenet-200"
    wnids_file = root / "wnids.txt"
    ann_file = root / "val" / "val_annotations.txt"
    for p in (wnids_file, ann_file, root / "train"):
        if not p.exists():
            raise DatasetError(f"missing {p}; expected layout: {spec.layout}")
    wnids = sorted(w.strip() for w in wnids_file.read_text().split() if w.strip())[:num_classes]
    if len(wnids) < num_classes:
        raise DatasetError(f"{wnids_file} lists {len(wnids)} classes; the benchmark needs {num_classes}")
    index = {w: i for i, w in enumerate(wnids)}

    def load(paths_labels: List[Tuple[Path, int]]) -> ImageTensorDataset:
        arr = np.empty((len(paths_labels), 64, 64, 3), dtype=np.uint8)
        for i, (p, _) in enumerate(paths_labels):
            try:
                with Image.open(p) as im:
                    arr[i] = np.asarray(im.convert("RGB").resize((64, 64)))
            except Exception as exc:
                raise DatasetError(f"cannot read image {p}: {exc}") from exc
        return ImageTensorDataset(torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), [l for _, l in paths_labels])

    train = []
    for w in wnids:
        img_dir = root / "train" / w / "images"
        files = sorted(img_dir.glob("*.JPEG"))
        if not files:
            raise DatasetError(f"no images in {img_dir}; expected layout: {spec.layout}")
        train.extend((f, index[w]) for f in files)
    test = []
    for line in ann_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1] in index:
            test.append((root / "val" / "images" / parts[0], index[parts[1]]))
    return load(train), load(test)


def _subsample(ds: ImageTensorDataset, per_class: Optional[int], rng: random.Random) -> ImageTensorDataset:
    return _subset(ds, _pick(ds, per_class, rng))


def _pick(ds: ImageTensorDataset, per_class: Optional[int], rng: random.Random,
          exclude: Sequence[int] = ()) -> List[int]:
    """Sorted indices of at most ``per_class`` random images of each class (all when ``None``),
    never one of ``exclude``."""
    excluded = set(exclude)
    by_class: Dict[int, List[int]] = {}
    for i, t in enumerate(ds.targets):
        if i not in excluded:
            by_class.setdefault(t, []).append(i)
    keep: List[int] = []
    for c in sorted(by_class):
        idx = by_class[c]
        keep.extend(idx if per_class is None else sorted(rng.sample(idx, min(per_class, len(idx)))))
    return sorted(keep)


def _subset(ds: ImageTensorDataset, keep: Sequence[int]) -> ImageTensorDataset:
    return ImageTensorDataset(ds.images[list(keep)], [ds.targets[i] for i in keep])


def _validation_split(train: ImageTensorDataset, kept: List[int], per_class: int, rng: random.Random,
                      num_classes: int) -> ImageTensorDataset:
    """``per_class`` training images of each class that are not in ``kept`` (the training subset)."""
    held = _pick(train, per_class, rng, exclude=kept)
    counts = [0] * num_classes
    for i in held:
        counts[train.targets[i]] += 1
    short = [c for c, n in enumerate(counts) if n < per_class]
    if short:
        raise not_accepted("data.eval_split", "validation",
                           f"'test' here, or a smaller data.max_train_per_task: class {short[0]} has only "
                           f"{counts[short[0]]} training images left after the training subset, {per_class} are needed")
    return _subset(train, held)


def _check_split(n_experiences: int, n_classes: int, name: str) -> None:
    if n_experiences < 1 or n_classes % n_experiences:
        raise ValueError(f"n_experiences={n_experiences} must be >= 1 and divide the {n_classes} classes of {name!r}")


def make_benchmark(
    name: str = "fmnist",
    *,
    data_root: Optional[str] = None,
    n_experiences: Optional[int] = None,
    num_classes: Optional[int] = None,
    class_order: Optional[Sequence[int]] = None,
    shuffle_classes: bool = False,
    seed: int = 0,
    max_train_per_task: Optional[int] = None,
    max_test_per_task: Optional[int] = None,
    eval_split: str = "test",
    download: bool = True,
    augmentation_options: Optional[Dict[str, Any]] = None,
    task_transforms: Sequence[Union[str, TaskTransform]] = (),
) -> SSLBenchmark:
    """Build a class-incremental benchmark by name.

    Args:
        name: one of :data:`BENCHMARKS` (``fmnist``, ``cifar10``, ``cifar100``, ``tinyimagenet``).
        data_root: directory with the data (torchvision's layout; see the module docs).
        n_experiences: number of tasks (default: 5 for 10-class sets, 20 otherwise).
        num_classes: Tiny-ImageNet only: 100 (default, classes 0-99 as in LUMP) or 200.
        class_order: explicit class order (default: 0, 1, 2, ...).
        shuffle_classes: shuffle the class order with ``seed``.
        seed: seed of the class shuffle and of the subsampling.
        max_train_per_task: cap on training images per task (class-balanced), for quick runs.
        max_test_per_task: cap on test images per task (class-balanced).
        eval_split: ``test`` (the evaluation stream is the test set) or ``validation`` (it is made of
            training images not used for training, as many per class as the test split would have).
        download: Fashion-MNIST only: allow torchvision's download as a last resort.
        augmentation_options: options of the two-view augmentation (see
            :class:`~avalanche_freeze.augmentations.AugmentConfig`).
        task_transforms: per task, a transform of its images (see :func:`benchmark_from_datasets`).

    Raises:
        ValueError: unknown name or inconsistent split.
        DatasetError: data missing or corrupt (the message names the path and layout).
    """
    key = name.lower()
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; accepted: {', '.join(BENCHMARKS)}")
    spec = BENCHMARKS[key]
    n_cls = spec.num_classes
    if num_classes is not None:
        if key != "tinyimagenet" or num_classes not in (100, 200):
            accepted = "100 or 200 (tinyimagenet only)"
            raise ValueError(f"num_classes={num_classes} is not accepted for {key!r}; accepted: {accepted}")
        n_cls = num_classes
    n_exp = n_experiences or spec.default_experiences
    _check_split(n_exp, n_cls, key)  # before loading anything

    if key == "fmnist":
        train, test = _load_fmnist(data_root, download)
    elif key in ("cifar10", "cifar100"):
        train, test = _load_cifar(key, data_root)
    else:
        train, test = _load_tinyimagenet(data_root, n_cls)

    cls_per_task = n_cls // n_exp
    where = data_root or str(DEBIAN_FASHION_MNIST)
    for split, ds in (("training", train), ("test", test)):
        present = set(ds.targets)
        missing = [c for c in range(n_cls) if c not in present]
        if missing:
            raise DatasetError(f"the {split} set of {key!r} in {where} has no image of class {missing[0]}"
                               f"{f' (nor of {len(missing) - 1} other classes)' if len(missing) > 1 else ''}; "
                               f"every class 0..{n_cls - 1} is needed")
    if max_train_per_task is not None and max_train_per_task < 2 * cls_per_task:
        raise not_accepted("max_train_per_task", max_train_per_task,
                           f"null or at least {2 * cls_per_task} (two images of each of the {cls_per_task} classes "
                           "of a task: BatchNorm needs two samples)")
    if max_test_per_task is not None and max_test_per_task < cls_per_task:
        raise not_accepted("max_test_per_task", max_test_per_task, f"null or at least {cls_per_task} (one image per class)")
    check_choice("eval_split", eval_split, EVAL_SPLITS)
    rng = random.Random(seed)
    kept = _pick(train, None if max_train_per_task is None else max(1, max_train_per_task // cls_per_task), rng)
    test_per_class = None if max_test_per_task is None else max(1, max_test_per_task // cls_per_task)
    test = _subsample(test, test_per_class, rng)
    if eval_split == "validation":
        per_class = test_per_class or min(Counter(test.targets).values())
        test = _validation_split(train, kept, per_class, random.Random(seed + 1), n_cls)
    train = _subset(train, kept)
    per_class = Counter(train.targets)
    scarce = min(range(n_cls), key=lambda c: per_class.get(c, 0))
    if per_class.get(scarce, 0) < 2:
        raise DatasetError(f"the training set of {key!r} in {where} has {per_class.get(scarce, 0)} image(s) of class "
                           f"{scarce}; every class needs two at least (BatchNorm needs two samples per batch)")

    if class_order is None:
        order = list(range(n_cls))
        if shuffle_classes:
            random.Random(seed).shuffle(order)
    else:
        order = [int(c) for c in class_order]
    return benchmark_from_datasets(train, test, name=key, n_experiences=n_exp, class_order=order,
                                   image_size=spec.image_size, channels=spec.channels, mean=spec.mean, std=spec.std,
                                   augmentation_options=augmentation_options, task_transforms=task_transforms,
                                   seed=seed)


def benchmark_from_datasets(
    train: ImageTensorDataset,
    test: ImageTensorDataset,
    *,
    name: str,
    n_experiences: int,
    class_order: Sequence[int],
    image_size: int,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    augmentation_options: Optional[Dict[str, Any]] = None,
    task_transforms: Sequence[Union[str, TaskTransform]] = (),
    seed: int = 0,
) -> SSLBenchmark:
    """A class-incremental :class:`SSLBenchmark` over in-memory datasets (any images in ``[0, 1]``).

    Args:
        train, test: the datasets (``uint8`` images ``[N, C, H, W]`` with integer labels).
        name: the benchmark's name.
        n_experiences: number of tasks; it must divide the number of classes.
        class_order: the classes in the order tasks receive them (a permutation of ``0..K-1``).
        image_size, channels, mean, std: image geometry and normalisation of the augmentation.
        augmentation_options: further options of :class:`TwoViewAugmentation`.
        task_transforms: empty (default), or one transform per task: a name of
            :data:`~avalanche_freeze.task_transforms.TASK_TRANSFORMS` or a callable on float images
            ``[N, C, H, W]`` in ``[0, 1]``. It is applied to every training and evaluation image of
            the task, before any augmentation.
        seed: the run's seed (``permute`` draws its permutation per task and seed).

    Example:
        >>> images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
        >>> data = ImageTensorDataset(images, [i % 4 for i in range(40)])
        >>> bench = benchmark_from_datasets(data, data, name="toy", n_experiences=2, class_order=[0, 1, 2, 3],
        ...                                 image_size=8, channels=1, mean=(0.5,), std=(0.25,))
        >>> [len(exp.dataset) for exp in bench.benchmark.train_stream]
        [20, 20]
    """
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark

    n_cls = len(class_order)
    if sorted(class_order) != list(range(n_cls)):
        raise ValueError(f"class_order={list(class_order)} must be a permutation of 0..{n_cls - 1}")
    _check_split(n_experiences, n_cls, name)
    if task_transforms:
        if len(task_transforms) != n_experiences:
            raise not_accepted("task_transforms", list(task_transforms),
                               f"one transform per task ({n_experiences} tasks) or none")
        per_task = n_cls // n_experiences
        task_of_class = {c: i // per_task for i, c in enumerate(class_order)}
        train, test = (ImageTensorDataset(apply_task_transforms(ds.images, [task_of_class[int(y)] for y in ds.targets],
                                                                task_transforms, seed=seed), ds.targets)
                       for ds in (train, test))
    bench = nc_benchmark(
        train, test, n_experiences=n_experiences, task_labels=False,
        shuffle=False, fixed_class_order=list(class_order),
    )
    joint = nc_benchmark(train, test, n_experiences=1, task_labels=False, shuffle=False,
                         fixed_class_order=list(class_order))
    aug = TwoViewAugmentation(image_size=image_size, channels=channels, mean=mean, std=std,
                              **(augmentation_options or {}))
    return SSLBenchmark(name=name, benchmark=bench, augmentation=aug, num_classes=n_cls, in_channels=channels,
                        joint_train_stream=joint.train_stream)
