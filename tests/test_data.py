"""reslab.data: the real Fashion-MNIST, the IDX and CIFAR readers (and their refusals), the device loader's
augmentation, determinism and exact resume, validation splits, subsets and image folders."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reslab.data import (
    FASHION_MNIST_CLASSES,
    ArrayDataset,
    DeviceLoader,
    channel_stats,
    iterate_eval,
    load_dataset,
    make_imagefolder_loaders,
    read_idx,
    split_validation,
    subset_dataset,
)
from reslab.data import datasets as datasets_mod
from reslab.errors import ConfigError, DataError

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_search(monkeypatch, tmp_path):
    """No test sees the user's $RESLAB_DATA or download cache."""
    monkeypatch.delenv("RESLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# ----------------------------------------------------------------------------------- Fashion-MNIST


@pytest.fixture(scope="module")
def fmnist():
    if not (SYSTEM_FMNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
    return load_dataset("fashion-mnist", data_dir=SYSTEM_FMNIST)


def test_real_fashion_mnist(fmnist):
    ds = fmnist
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert ds.classes == list(FASHION_MNIST_CLASSES) and ds.num_classes == 10
    assert ds.input_size == (1, 28, 28) and ds.flip and ds.val_x is None
    # The data set is balanced: 6,000 training and 1,000 test images per class (Xiao et al. 2017).
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    # Per-pixel statistics of the training images on the 0-1 scale (commonly quoted 0.2860 / 0.3530).
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert ds.std[0] == pytest.approx(0.3530, abs=1e-3)
    # The 45k/5k-style split is deterministic and leaves the test set alone.
    split = split_validation(ds, 5000, seed=0)
    assert len(split.train_y) == 55000 and len(split.val_y) == 5000 and split.test_x is ds.test_x


# ------------------------------------------------------------------------------------------- IDX


def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    return struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def test_idx_reads_gzip_and_raw(tmp_path):
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(imgs)))
    (tmp_path / "a").write_bytes(_idx_bytes(imgs))
    for name in ("a.gz", "a"):
        got = read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and np.array_equal(got, imgs)
    # Big-endian int32 payloads come back native and correct.
    ints = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "i").write_bytes(_idx_bytes(ints, code=0x0C))
    assert read_idx(tmp_path / "i").tolist() == [1, -2, 70000]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:2] + b"\x42" + b[3:], "magic"),  # unknown dtype code
        (lambda b: b[:6], "header"),
        (lambda b: gzip.compress(b)[:-12], "gzip"),
    ],
)
def test_idx_rejects_bad_files(tmp_path, mutate, message):
    path = tmp_path / "bad"
    path.write_bytes(mutate(_idx_bytes(np.zeros((2, 3, 4), np.uint8))))
    with pytest.raises(DataError, match=message) as e:
        read_idx(path)
    assert "\n" not in str(e.value)


def _write_fmnist(folder: Path, n_train=6, n_test=4, size=(28, 28), compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for stem, arr in files.items():
        raw = _idx_bytes(arr)
        if compress:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return files


def test_fashion_mnist_search_order(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_mod, "SYSTEM_ROOT", tmp_path / "system")
    mine = _write_fmnist(tmp_path / "mine" / "FashionMNIST" / "raw", n_train=6, compress=False)
    _write_fmnist(tmp_path / "env" / "fashion-mnist", n_train=8)
    monkeypatch.setenv("RESLAB_DATA", str(tmp_path / "env"))
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "mine")  # data_dir first, raw files accepted
    assert len(ds.train_y) == 6 and ds.train_x.shape == (6, 1, 28, 28)
    assert np.array_equal(ds.train_x[:, 0].numpy(), mine["train-images-idx3-ubyte"])
    assert len(load_dataset("fashion_mnist").train_y) == 8  # then $RESLAB_DATA (gzip), alias accepted


def test_fashion_mnist_wrong_shape(tmp_path):
    _write_fmnist(tmp_path, size=(27, 28))
    with pytest.raises(DataError, match=r"expected \(28, 28\)"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_missing_data_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_mod, "SYSTEM_ROOT", tmp_path / "system")
    monkeypatch.setenv("RESLAB_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "given")
    msg = str(e.value)
    assert "\n" not in msg
    for place in ("given", "env", "system", "xdg-cache"):
        assert str(tmp_path / place) in msg
    assert (
        "FashionMNIST/raw" in msg and "apt-get install dataset-fashion-mnist" in msg and "--download" in msg
    )
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*--download"):
        load_dataset("cifar10", data_dir=tmp_path / "given")


# ------------------------------------------------------------------------------------------- CIFAR


def _pattern(n: int, seed: int) -> np.ndarray:
    """A known (N, 3, 32, 32) image stack: value depends on (image, channel, row, column)."""
    k, c, r, q = np.meshgrid(np.arange(n), np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((k * 31 + c * 85 + r * 7 + q * 3 + seed) % 256).astype(np.uint8)


def _cifar_row(images: np.ndarray) -> np.ndarray:
    """The file layout, built by hand: 1024 red values (row-major 32x32), then 1024 green, 1024 blue."""
    n = len(images)
    rows = np.empty((n, 3072), np.uint8)
    for i in range(n):
        for c in range(3):
            for r in range(32):
                rows[i, c * 1024 + r * 32 : c * 1024 + r * 32 + 32] = images[i, c, r]
    return rows


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote the original files: strings as SHORT_BINSTRING/BINSTRING (no
    ``_codecs.encode``), numpy's reconstructor under its old name ``numpy.core.multiarray``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", "") == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str
    dispatch[type(len)] = save_global


def _dump(path: Path, obj, style: str = "py3") -> None:
    with open(path, "wb") as f:
        if style == "py2":
            _Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=2)  # protocol 2, as the originals


def _write_cifar10(root: Path, per_batch=3, n_test=4, style="py3") -> dict:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    truth = {"train": [], "train_y": [], "test": None}
    for b in range(1, 6):
        imgs = _pattern(per_batch, seed=b)
        labels = [(b + i) % 10 for i in range(per_batch)]
        truth["train"].append(imgs)
        truth["train_y"] += labels
        batch = {
            b"batch_label": f"training batch {b} of 5".encode(),
            b"labels": labels,
            b"data": _cifar_row(imgs),
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(per_batch)],
        }
        _dump(d / f"data_batch_{b}", batch, style)
    test_imgs = _pattern(n_test, seed=99)
    truth["test"] = test_imgs
    _dump(
        d / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [9, 0, 1, 2][:n_test],
            b"data": _cifar_row(test_imgs),
            b"filenames": [b""] * n_test,
        },
        style,
    )
    names = b"airplane automobile bird cat deer dog frog horse ship truck".split()
    _dump(
        d / "batches.meta",
        {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072},
        style,
    )
    return truth


@pytest.mark.parametrize("style", ["py3", "py2"])
def test_cifar10_layout_labels_and_classes(tmp_path, style):
    truth = _write_cifar10(tmp_path, style=style)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.train_x.shape == (15, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert np.array_equal(ds.train_x.numpy(), np.concatenate(truth["train"]))
    assert np.array_equal(ds.test_x.numpy(), truth["test"])
    assert ds.train_y.tolist() == truth["train_y"] and ds.test_y.tolist() == [9, 0, 1, 2]
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck" and ds.num_classes == 10
    # Pixel (image 1, green, row 2, column 5) sits at 1024 + 2*32 + 5 of the row.
    assert ds.train_x[1, 1, 2, 5] == (1 * 31 + 85 + 14 + 15 + 1) % 256
    assert (ds.mean, ds.std) == channel_stats(ds.train_x) and len(ds.std) == 3 and ds.flip


def test_cifar100_fine_labels(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    imgs = _pattern(5, seed=3)
    fine, coarse = [0, 99, 42, 7, 13], [0, 19, 1, 2, 3]
    common = {b"filenames": [b"x"] * 5, b"coarse_labels": coarse, b"data": _cifar_row(imgs)}
    _dump(d / "train", {b"batch_label": b"training batch 1 of 1", b"fine_labels": fine, **common})
    _dump(d / "test", {b"batch_label": b"testing batch 1 of 1", b"fine_labels": fine[::-1], **common})
    fine_names = [f"class{i}".encode() for i in range(100)]
    _dump(d / "meta", {b"fine_label_names": fine_names, b"coarse_label_names": [b"c"] * 20})
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.train_y.tolist() == fine and ds.test_y.tolist() == fine[::-1]
    assert ds.num_classes == 100 and ds.classes[42] == "class42"
    assert np.array_equal(ds.train_x.numpy(), imgs)
    # A label out of range is refused.
    _dump(d / "test", {b"batch_label": b"t", b"fine_labels": [100, 0, 0, 0, 0], **common})
    with pytest.raises(DataError, match=r"outside \[0, 100\)"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_cifar_wrong_shape(tmp_path):
    _write_cifar10(tmp_path)
    bad = {b"labels": [0, 1], b"data": np.zeros((2, 3071), np.uint8), b"batch_label": b"", b"filenames": []}
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_3", bad)
    with pytest.raises(DataError, match=r"data_batch_3.*\(N, 3072\)"):
        load_dataset("cifar10", data_dir=tmp_path)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file when unpickled


def test_malicious_pickle_is_refused(tmp_path):
    truth_root = tmp_path / "data"
    _write_cifar10(truth_root)
    marker = tmp_path / "pwned"
    evil = {b"labels": [0], b"data": np.zeros((1, 3072), np.uint8), b"batch_label": _Evil(marker)}
    _dump(truth_root / "cifar-10-batches-py" / "data_batch_2", evil)
    assert pickle.loads(pickle.dumps(_Evil(tmp_path / "proof"), protocol=2)) and (tmp_path / "proof").exists()
    with pytest.raises(DataError, match=r"refusing to unpickle [\w.]*open"):
        load_dataset("cifar10", data_dir=truth_root)
    assert not marker.exists()


def test_unpickler_refuses_object_arrays_and_odd_codecs(tmp_path):
    from reslab.data import safe_load_pickle

    path = tmp_path / "p"
    _dump(path, {b"data": np.array([1, 2], dtype=object)})
    with pytest.raises(DataError, match="refusing to unpickle a numpy array of Python objects"):
        safe_load_pickle(path)
    # protocol 2 spells bytes as _codecs.encode(str, "latin1"); any other codec is refused
    buf = io.BytesIO()
    pickle.dump(b"ok", buf, protocol=2)
    path.write_bytes(buf.getvalue().replace(b"latin1", b"rot_13"))
    with pytest.raises(DataError, match=r"refusing to unpickle _codecs\.encode"):
        safe_load_pickle(path)
    path.write_bytes(buf.getvalue()[:-3])
    with pytest.raises(DataError, match="corrupt or truncated"):
        safe_load_pickle(path)


# -------------------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic():
    a = load_dataset("synthetic", shape=(2, 5, 7), num_classes=3, train_size=20, test_size=6, seed=1)
    b = load_dataset("synthetic", shape=(2, 5, 7), num_classes=3, train_size=20, test_size=6, seed=1)
    c = load_dataset("synthetic", shape=(2, 5, 7), num_classes=3, train_size=20, test_size=6, seed=2)
    assert a.train_x.shape == (20, 2, 5, 7) and a.test_x.shape == (6, 2, 5, 7) and a.num_classes == 3
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert int(a.train_y.max()) < 3 and a.input_size == (2, 5, 7) and len(a.mean) == 2


# ------------------------------------------------------------------------------ splits and subsets


def _indexed(n=100, shape=(1, 4, 4), classes=4) -> ArrayDataset:
    """Training images whose first pixel is their own index (mod 256), labels cycling over classes."""
    x = torch.zeros(n, *shape, dtype=torch.uint8)
    x.view(n, -1)[:, 0] = torch.arange(n) % 256
    y = torch.arange(n) % classes
    mean, std = channel_stats(x)
    return ArrayDataset(
        "toy", x, y, x[:10].clone(), y[:10].clone(), [str(i) for i in range(classes)], mean, std
    )


def test_split_validation_disjoint_and_deterministic():
    ds = _indexed()
    a, b, c = (
        split_validation(ds, 20, seed=0),
        split_validation(ds, 20, seed=0),
        split_validation(ds, 20, seed=1),
    )
    train_ids = set(a.train_x.view(len(a.train_x), -1)[:, 0].tolist())
    val_ids = set(a.val_x.view(20, -1)[:, 0].tolist())
    assert len(train_ids) == 80 and len(val_ids) == 20 and not train_ids & val_ids
    assert train_ids | val_ids == set(range(100))
    assert torch.equal(a.val_x, b.val_x) and not torch.equal(a.val_x, c.val_x)
    assert a.test_x is ds.test_x and a.mean == channel_stats(a.train_x)[0]
    assert len(split_validation(ds, 0.1, seed=0).val_y) == 10


def test_subset_first_random_stratified():
    ds = _indexed()
    first = subset_dataset(ds, 10)
    assert first.train_x.view(10, -1)[:, 0].tolist() == list(range(10))
    r1, r2 = subset_dataset(ds, 10, seed=3), subset_dataset(ds, 10, seed=3)
    assert torch.equal(r1.train_x, r2.train_x) and not torch.equal(r1.train_x, first.train_x)
    strat = subset_dataset(ds, 10, seed=0, stratified=True)
    assert sorted(torch.bincount(strat.train_y).tolist()) == [2, 2, 3, 3]


# -------------------------------------------------------------------------------------- the loader


def _loader(n=64, shape=(3, 6, 5), **kw):
    """A loader whose labels are the image indices, so every batch says where each image came from."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    kw = {"mean": (0.5, 0.4, 0.3)[: shape[0]], "std": (0.2, 0.25, 0.3)[: shape[0]], **kw}
    return x, DeviceLoader(x, torch.arange(n), kw.pop("batch_size", 8), **kw)


def _unnormalize(xb, mean, std):
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return ((xb * s + m) * 255).round().to(torch.uint8)


def test_augmentation_is_a_padded_crop_with_flips():
    pad = 2
    x, loader = _loader(n=256, augment=True, pad=pad, batch_size=32, seed=5)
    _, _, h, w = x.shape
    k = 2 * pad + 1
    # The reference, per image: all k*k windows of its zero-padded source, plain and mirrored.
    windows = F.pad(x, (pad,) * 4).unfold(2, h, 1).unfold(3, w, 1).permute(0, 2, 3, 1, 4, 5)  # N,k,k,C,h,w
    candidates = torch.cat([windows, windows.flip(-1)], 1).reshape(len(x), 2 * k * k, 3, h, w)
    flips, offsets = 0, set()
    m = torch.tensor(loader.mean).view(1, 3, 1, 1)
    s = torch.tensor(loader.std).view(1, 3, 1, 1)
    for xb, yb in loader:
        assert xb.dtype == torch.float32 and xb.shape == (32, 3, h, w)
        imgs = _unnormalize(xb, loader.mean, loader.std)
        torch.testing.assert_close(xb, (imgs.float() / 255 - m) / s, rtol=0, atol=1e-5)  # normalization
        hits = (candidates[yb] == imgs[:, None]).flatten(2).all(2)  # (B, 2 k k): which window matches
        assert hits.any(1).all(), "an image is not a crop of its zero-padded source"
        first = hits.float().argmax(1)
        offsets |= {divmod(int(f) % (k * k), k) for f in first}
        flips += int((first >= k * k).sum())
    assert len(offsets) == (2 * pad + 1) ** 2  # every window offset occurs
    assert 0.4 < flips / 256 < 0.6  # flips ~ Binomial(256, 1/2)


def test_no_augmentation_keeps_images_and_flip_off():
    x, loader = _loader(n=40, augment=False, batch_size=8, shuffle=False)
    xb, yb = next(iter(loader))
    assert yb.tolist() == list(range(8))
    assert torch.equal(_unnormalize(xb, loader.mean, loader.std), x[:8])
    x, noflip = _loader(n=64, augment=True, flip=False, pad=0, batch_size=64)  # pad 0, no flip: identity
    xb, yb = next(iter(noflip))
    assert torch.equal(_unnormalize(xb, noflip.mean, noflip.std), x[yb])


def test_loader_determinism_and_epochs():
    _, a = _loader(augment=True, seed=1)
    _, b = _loader(augment=True, seed=1)
    _, c = _loader(augment=True, seed=2)
    ea, eb, ec = list(a), list(b), list(c)
    assert len(ea) == len(a) == 8 and a.epoch == 1 and a.position == 0
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(ea, eb))
    assert not torch.equal(ea[0][1], ec[0][1])
    second = list(a)
    assert not torch.equal(torch.cat([y for _, y in ea]), torch.cat([y for _, y in second]))
    assert sorted(torch.cat([y for _, y in second]).tolist()) == list(range(64))


def test_state_dict_resume_is_bit_identical(tmp_path):
    _, a = _loader(n=60, augment=True, seed=7, batch_size=8, drop_last=False)  # 8 batches, last of 4
    stream = a.batches()
    for _ in range(11):  # one epoch and 3 batches into the next
        next(stream)
    path = tmp_path / "state.pt"
    torch.save(a.state_dict(), path)
    rest = [next(stream) for _ in range(12)]  # crosses into a third epoch
    _, b = _loader(n=60, augment=True, seed=7, batch_size=8, drop_last=False)
    b.load_state_dict(torch.load(path, weights_only=True))
    assert b.state_dict()["epoch"] == 1 and b.state_dict()["position"] == 3
    stream_b = b.batches()
    for (xa, ya), (xb, yb) in zip(rest, [next(stream_b) for _ in range(12)]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert rest[4][0].shape[0] == 4  # the last, short batch of the epoch is kept without drop_last


def test_end_of_epoch_state_rolls_over():
    _, a = _loader(n=64, batch_size=8)
    for _ in a:
        pass
    assert a.state_dict()["epoch"] == 1 and a.state_dict()["position"] == 0
    _, other = _loader(n=64, batch_size=16)
    with pytest.raises(ConfigError, match="batch_size=8"):
        other.load_state_dict(a.state_dict())


def test_shards_split_one_global_permutation():
    world, bs = 3, 4
    _, single = _loader(n=50, seed=3, batch_size=bs * world)
    glob = single.epoch_indices()[: len(single) * bs * world]
    seen = []
    for rank in range(world):
        _, shard = _loader(n=50, seed=3, batch_size=bs, shard=(rank, world))
        ids = torch.cat([y for _, y in shard])
        assert len(shard) == 4 and torch.equal(ids, glob[rank::world])
        seen.append(ids)
    allids = torch.cat(seen)
    assert len(set(allids.tolist())) == len(allids) == 48  # disjoint, whole global batches
    # without drop_last every sample is seen (the plan wraps around to even out the ranks)
    union = set()
    lens = set()
    for rank in range(world):
        _, shard = _loader(n=50, seed=3, batch_size=bs, shard=(rank, world), drop_last=False)
        lens.add(len(shard))
        union |= set(torch.cat([y for _, y in shard]).tolist())
    assert union == set(range(50)) and len(lens) == 1


def test_iterate_eval_keeps_every_sample():
    x = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    batches = list(iterate_eval(x, torch.arange(10), 4, "cpu", (0.5,), (0.25,)))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    torch.testing.assert_close(torch.cat([b for b, _ in batches]), (x.float() / 255 - 0.5) / 0.25)


def test_loader_dtype_and_channels_last():
    _, loader = _loader(augment=True, dtype=torch.bfloat16, channels_last=True)
    xb, _ = next(iter(loader))
    assert xb.dtype == torch.bfloat16 and xb.is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------- image folders


def test_imagefolder_batch(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                arr = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    loaders = make_imagefolder_loaders(tmp_path, batch_size=4, workers=1, image_size=32, pin_memory=False)
    assert loaders.classes == ["cat", "dog"]
    xb, yb = next(iter(loaders.train))
    assert xb.shape == (4, 3, 32, 32) and xb.dtype == torch.float32 and set(yb.tolist()) <= {0, 1}
    assert float(xb.min()) > -2.2 and float(xb.max()) < 2.7  # ImageNet-normalized range
    val = [(x, y) for x, y in loaders.val]
    assert sum(len(y) for _, y in val) == 6 and val[0][0].shape[1:] == (3, 32, 32)
    assert torch.cat([y for _, y in val]).tolist() == [0, 0, 0, 1, 1, 1]
    # distributed: rank 1 of 2 evaluates images 1, 3, 5 (each exactly once over the ranks)
    dist = make_imagefolder_loaders(
        tmp_path, 1, workers=0, image_size=32, distributed=True, rank=1, world_size=2, pin_memory=False
    )
    assert torch.cat([y for _, y in dist.val]).tolist() == [0, 1, 1] and len(dist.train) == 3
    assert dist.train_sampler is not None and dist.train_sampler.rank == 1
    (tmp_path / "val").rename(tmp_path / "validation")
    with pytest.raises(DataError, match="no val/ folder"):
        make_imagefolder_loaders(tmp_path, batch_size=2, workers=0, image_size=32)


def test_download_only_when_asked(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = []

    def offline(url, download_root, **kw):
        calls.append((url, download_root))
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="not found"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert calls == []  # download=False never touches the network
    with pytest.raises(DataError, match=r"could not download cifar10 to .*\(offline\?\)") as e:
        load_dataset("cifar10", data_dir=tmp_path, download=True)
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", str(tmp_path))]
    assert "\n" not in str(e.value)


def test_cutout_zeroes_one_clipped_square_and_changes_nothing_else():
    from reslab.data.loader import cutout_mask

    # the mask: a size x size square around the centre, clipped at the borders
    m = cutout_mask(torch.tensor([[0, 0], [3, 2], [5, 4]]), 3, 6, 5)
    assert m[0].sum() == 4 and bool(m[0, :2, :2].all())  # centre in the corner: a 2x2 quarter
    assert m[1].sum() == 9 and bool(m[1, 2:5, 1:4].all())
    assert m[2].sum() == 4 and bool(m[2, 4:, 3:].all())

    _, plain = _loader(augment=True, pad=1, seed=5)
    _, cut = _loader(augment=True, pad=1, seed=5, cutout=3)
    masked = 0
    for (xa, ya), (xb, yb) in zip(plain, cut):
        assert torch.equal(ya, yb)  # same order: the centres are drawn after order, crops and flips
        hole = (xb == 0).all(1)  # (B, H, W): zero in every channel
        assert bool(((xb == xa) | hole[:, None]).all())  # outside the square: the same pixels
        per_image = hole.flatten(1).sum(1)
        assert bool(((per_image >= 4) & (per_image <= 9)).all())  # one square of 3x3, clipped to >= 2x2
        masked += int(per_image.sum())
    assert masked > 0
    _, off = _loader(augment=False, cutout=3)  # no augmentation, no cutout
    assert off.cutout == 0
