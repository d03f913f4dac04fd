"""reslab.data.scenes: Fashion-MNIST scenes whose labels are exact (they are the pasted pixels), drawn
deterministically from the split they belong to, cached with a checksum that is verified on every load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reslab.data import load_dataset
from reslab.data.scenes import SceneConfig, build_scenes, load_scenes, resize_garment
from reslab.errors import ConfigError

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def fmnist():
    if not (SYSTEM_FMNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
    return load_dataset("fashion-mnist", data_dir=SYSTEM_FMNIST)


@pytest.fixture(scope="module")
def scenes(fmnist):
    return build_scenes(fmnist.train_x, fmnist.train_y, 40, seed=3, split="train")


def test_labels_are_the_pasted_pixels(fmnist, scenes):
    """Every garment's visible pixels are exactly its resized Fashion-MNIST image at its placement, its box
    bounds them, its label is the image's class + 1 and at least ``min_visible`` of it is visible."""
    cfg = SceneConfig()
    assert scenes.images.shape == (40, 1, 128, 128) and scenes.instances.shape == (40, 128, 128)
    counts = scenes.counts()
    assert int(counts.min()) >= 1 and int(counts.max()) <= 6 and int(counts.sum()) == len(scenes.labels)
    overlapping = 0
    for i in range(len(scenes)):
        lo = int(scenes.offsets[i])
        for k in range(1, int(counts[i]) + 1):
            j = lo + k - 1
            src = int(scenes.sources[j])
            x0, y0, side = scenes.placements[j].tolist()
            pixels = resize_garment(fmnist.train_x[src, 0].numpy(), side)
            own = pixels > cfg.threshold
            visible = (scenes.instances[i] == k).numpy()
            window = visible[y0 : y0 + side, x0 : x0 + side]
            assert visible.sum() == window.sum()  # nothing outside its placement
            assert np.all(own[window])  # only its own pixels ...
            canvas = scenes.images[i, 0].numpy()[y0 : y0 + side, x0 : x0 + side]
            assert np.array_equal(canvas[window], pixels[window])  # ... with their values
            assert window.sum() >= cfg.min_visible * own.sum()
            overlapping += window.sum() < own.sum()
            ys, xs = np.nonzero(visible)
            assert scenes.boxes[j].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert int(scenes.labels[j]) == int(fmnist.train_y[src]) + 1
    assert overlapping > 0  # some garments do overlap
    sem = scenes.semantic(range(len(scenes)))
    assert sem.dtype == torch.int64 and set(sem.unique().tolist()) <= set(range(11))
    for i in (0, 7):
        t = scenes.target(i)
        assert t["masks"].shape == (int(counts[i]), 128, 128)
        for m, label in zip(t["masks"], t["labels"]):
            assert torch.all(sem[i][m.bool()] == label)


def test_splits_and_determinism(fmnist, scenes):
    again = build_scenes(fmnist.train_x, fmnist.train_y, 40, seed=3, split="train")
    assert torch.equal(again.images, scenes.images) and torch.equal(again.boxes, scenes.boxes)
    first10 = build_scenes(fmnist.train_x, fmnist.train_y, 10, seed=3, split="train")
    assert torch.equal(first10.images, scenes.images[:10])  # scene i has its own random stream
    other = build_scenes(fmnist.train_x, fmnist.train_y, 10, seed=4, split="train")
    assert not torch.equal(other.images, first10.images)
    test = build_scenes(fmnist.test_x, fmnist.test_y, 10, seed=3, split="test")
    assert not torch.equal(test.images, first10.images)  # the split is part of the stream
    j = 0  # test scenes are made of test images
    x0, y0, side = test.placements[j].tolist()
    pixels = resize_garment(fmnist.test_x[int(test.sources[j]), 0].numpy(), side)
    window = (test.instances[0] == 1).numpy()[y0 : y0 + side, x0 : x0 + side]
    assert np.array_equal(test.images[0, 0].numpy()[y0 : y0 + side, x0 : x0 + side][window], pixels[window])
    assert int(test.sources.max()) < len(fmnist.test_y)


def test_cache_is_checked_and_rebuilt(fmnist, tmp_path):
    notes: list[str] = []
    cfg = SceneConfig(size=64, min_scale=14, max_scale=28)
    data = load_scenes(12, 6, seed=1, config=cfg, cache_dir=tmp_path, source=fmnist, log=notes.append)
    assert data.num_classes == 11 and data.classes[0] == "background" and data.in_chans == 1
    assert 0 < data.mean[0] < 1 and 0 < data.std[0] < 1 and not notes
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 4 and sum(f.endswith(".json") for f in files) == 2
    cached = load_scenes(12, 6, seed=1, config=cfg, cache_dir=tmp_path, source=fmnist, log=notes.append)
    assert torch.equal(cached.train.images, data.train.images) and not notes
    # a flipped byte in the train file: noticed, rebuilt, identical again
    path = Path(data.files["train"])
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    rebuilt = load_scenes(12, 6, seed=1, config=cfg, cache_dir=tmp_path, source=fmnist, log=notes.append)
    assert len(notes) == 1 and "checksum" in notes[0] and "train" in notes[0]
    assert torch.equal(rebuilt.train.images, data.train.images)
    assert torch.equal(rebuilt.train.instances, data.train.instances)
    # other arguments: other files, not a clash
    load_scenes(12, 6, seed=2, config=cfg, cache_dir=tmp_path, source=fmnist, log=notes.append)
    assert len(list(tmp_path.glob("*.npz"))) == 4


def test_bad_configs():
    with pytest.raises(ConfigError, match="max_objects"):
        SceneConfig(min_objects=3, max_objects=2).validate()
    with pytest.raises(ConfigError, match="max_scale <= size"):
        SceneConfig(size=32, max_scale=40).validate()
