"""Data on the device: every image once per epoch, in batches drawn there, without per-image work."""

import pytest
import torch
from torch.utils.data import TensorDataset

from avalanche_freeze.device_data import DeviceBatches
from avalanche_freeze.host_proxies import OpCounter, PythonCallCounter

from ..conftest import make_strategy


def _data(n=50, eight_bit=True):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=g).float() / 255
    if not eight_bit:
        images = images + 1e-3
    return TensorDataset(images, torch.arange(n), torch.full((n,), 7))


@pytest.mark.parametrize("drop_last, sizes", [(True, [16, 16, 16]), (False, [16, 16, 16, 2])])
def test_every_image_once_per_epoch_with_its_labels(drop_last, sizes):
    data = _data()
    batches = DeviceBatches(data, batch_size=16, device="cpu", drop_last=drop_last)
    assert batches.eight_bit and batches.images.dtype == torch.uint8 and len(batches) == len(sizes)
    epochs = []
    for _ in range(2):
        seen = []
        for images, labels, tasks in batches:
            assert torch.equal(images, data.tensors[0][labels])  # each image with its own label, exactly
            assert bool((tasks == 7).all())
            seen.append(labels)
        assert [len(s) for s in seen] == sizes
        labels = torch.cat(seen)
        assert len(set(labels.tolist())) == len(labels)  # no image twice in an epoch
        epochs.append(labels)
    assert not torch.equal(epochs[0], epochs[1])  # a new order every epoch
    ordered = DeviceBatches(data, batch_size=16, device="cpu", shuffle=False)
    assert torch.cat([y for _, y, _ in ordered]).tolist() == list(range(50))


def test_images_that_are_not_eight_bit_are_kept_as_they_are():
    data = _data(eight_bit=False)
    batches = DeviceBatches(data, batch_size=10, device="cpu", shuffle=False)
    assert not batches.eight_bit and batches.images.dtype == torch.float32
    assert torch.equal(next(iter(batches))[0], data.tensors[0][:10])


def test_a_fixed_generator_gives_the_same_order_and_no_per_image_work():
    data = _data(n=512)
    first = [y for _, y, _ in DeviceBatches(data, batch_size=64, device="cpu", generator=torch.Generator().manual_seed(1))]
    again = [y for _, y, _ in DeviceBatches(data, batch_size=64, device="cpu", generator=torch.Generator().manual_seed(1))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))

    def one_batch(batch_size):  # the second batch of an epoch (the first one draws the order)
        batches = iter(DeviceBatches(data, batch_size=batch_size, device="cpu"))
        next(batches)
        with PythonCallCounter() as calls:
            next(batches)
        with OpCounter() as ops:
            next(batches)
        return calls.count, ops.host_syncs

    (small_calls, small_syncs), (large_calls, large_syncs) = one_batch(8), one_batch(128)
    assert small_syncs == large_syncs == 0
    assert small_calls == large_calls  # the Python work of a batch does not grow with the batch


def test_an_empty_dataset_and_one_with_random_items_are_refused():
    with pytest.raises(ValueError, match="empty dataset"):
        DeviceBatches(TensorDataset(torch.zeros(0, 1, 2, 2), torch.zeros(0)), batch_size=4, device="cpu")

    class Noisy(torch.utils.data.Dataset):  # a random transform inside the dataset
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return torch.rand(1, 2, 2), i

    with pytest.raises(ValueError, match="items are random .* use Avalanche's loader"):
        DeviceBatches(Noisy(), batch_size=4, device="cpu")


def test_the_strategy_trains_on_every_image_of_the_experience_from_the_device(tiny_bench):
    seen, loaders = [], []

    class Spy:
        def before_forward(self, strategy, **kwargs):
            seen.append(strategy.mb_x.clone())
            loaders.append(strategy.dataloader)

    s = make_strategy(tiny_bench, [Spy()], data_on_device=True, train_mb_size=16)
    exp = tiny_bench.benchmark.train_stream[0]
    s.train(exp)
    assert all(isinstance(d, DeviceBatches) for d in loaders) and len(seen) == len(exp.dataset) // 16
    expected = torch.stack([exp.dataset[i][0] for i in range(len(exp.dataset))])
    got = torch.cat(seen)
    # every image of the experience once, exactly as the loader would give it
    matches = (got.flatten(1)[:, None, :] == expected.flatten(1)[None, :, :]).all(-1)
    assert bool((matches.sum(1) >= 1).all()) and len(set(matches.float().argmax(1).tolist())) == len(got)
