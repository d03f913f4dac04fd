"""The face task (issue 33): the verification protocol against hand-computed and scikit-learn numbers,
the identity split, and a tiny Olivetti run trained, evaluated and asked about two photographs of one
person and of two people, through the command line; bad paths and corrupt files are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reslab.cli import main
from reslab.data.faces import OLIVETTI_FILE, split_identities
from reslab.tasks.verification import (
    best_threshold,
    identification_top1,
    lfw_accuracy,
    make_pairs,
    verification,
)

OLIVETTI = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "olivetti-faces"
needs_olivetti = pytest.mark.skipif(
    not (OLIVETTI / OLIVETTI_FILE).is_file(), reason=f"the Olivetti fixture is absent ({OLIVETTI})"
)
TINY = ["--task", "face", "--model", "resnet20", "--data-dir", str(OLIVETTI), "--iterations", "6",
        "--set", "eval_every=3", "--set", "checkpoint_every=3", "--set", "warmup_iters=0",
        "--set", "task_kwargs.image_size=32", "--set", "task_kwargs.head=arcface", "--set", "tensorboard=false",
        "--device", "cpu", "--quiet"]  # fmt: skip


def test_pairs_are_every_positive_and_as_many_negatives_in_balanced_folds():
    identity = np.repeat(np.arange(10), 10)
    p = make_pairs(identity, seed=0)
    assert p["same"].sum() == 450 and (~p["same"]).sum() == 450  # 10 * C(10, 2) positives
    assert np.all((identity[p["i"]] == identity[p["j"]]) == p["same"]) and np.all(p["i"] < p["j"])
    for k in range(10):
        assert (p["same"] & (p["fold"] == k)).sum() == 45 and (~p["same"] & (p["fold"] == k)).sum() == 45
    again = make_pairs(identity, seed=0)
    assert all(np.array_equal(p[k], again[k]) for k in p)


def test_the_threshold_search_is_exact():
    rng = np.random.default_rng(1)
    scores, same = rng.normal(size=200), rng.random(200) < 0.5
    scores[same] += 1.0
    t, acc = best_threshold(scores, same)
    brute = max(np.mean((scores >= c) == same) for c in np.concatenate([scores, [np.inf]]))
    assert acc == pytest.approx(brute) and np.mean((scores >= t) == same) == pytest.approx(acc)


def test_verification_numbers_by_hand_and_by_scikit_learn():
    from sklearn.metrics import roc_auc_score

    # separable scores: every fold's threshold (chosen on the other nine) is right
    same = np.array([True, False] * 50)
    fold = np.arange(100) % 10
    acc, sd, _ = lfw_accuracy(np.where(same, 0.9, 0.1), same, fold)
    assert (acc, sd) == (1.0, 0.0)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    identity = np.repeat(np.arange(8), 5)
    pairs = make_pairs(identity, seed=3)
    r = verification(emb, identity, pairs)
    scores = np.sum(emb[pairs["i"]] * emb[pairs["j"]], axis=1)
    assert r["auc"] == pytest.approx(roc_auc_score(pairs["same"], scores))
    # identification: a probe equal to its person's gallery face is always right
    gallery = emb[::5]
    assert identification_top1(np.repeat(gallery, 5, axis=0), identity) == 1.0


def test_identities_are_split_not_images():
    s = split_identities(40, val=5, test=10, seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [25, 5, 10]
    assert len(set(np.concatenate(list(s.values())))) == 40


@needs_olivetti
def test_a_tiny_face_run_evaluates_and_tells_one_person_from_two(tmp_path, capsys):
    from PIL import Image

    from reslab.data.faces import load_olivetti
    from reslab.tasks.face import FaceData, face_options

    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "face" and summary["steps"] == 6
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "test: verification accuracy " in text and "(LFW protocol, 10 folds)" in text
    assert "[10 unseen test identities, 100 images, 900 pairs]" in text and (run / "roc.png").is_file()
    result = json.loads((run / "eval.json").read_text())
    assert 0.5 <= result["test"]["accuracy"] <= 1.0 and result["test"]["pairs"] == 900

    # two photographs of one unseen person, one of another
    test_people = FaceData("olivetti", str(OLIVETTI), face_options({})).ids["test"]
    faces = load_olivetti(OLIVETTI)
    a, b = (int(p) for p in test_people[:2])
    files = [tmp_path / "a1.png", tmp_path / "a2.png", tmp_path / "b1.png"]
    for f, j in zip(files, (10 * a, 10 * a + 1, 10 * b)):
        Image.fromarray(faces.images[j]).save(f)
    assert main(["predict", str(run), *map(str, files), "--json", "--device", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    t, found = doc["threshold"], doc["predictions"]
    assert t == result["threshold"] and doc["threshold_from"] == str(run / "eval.json")  # eval's threshold
    sims = np.array([f["similarity"] for f in found])
    assert np.allclose(sims, sims.T, atol=1e-5) and np.allclose(np.diag(sims), 1.0, atol=1e-4)
    assert all(np.linalg.norm(f["embedding"]) == pytest.approx(1.0, abs=1e-4) for f in found)
    # reslab features: the same normalized embeddings, to a NumPy file
    assert (
        main(["features", str(run), *map(str, files), "--out", str(tmp_path / "e.npz"), "--device", "cpu"])
        == 0
    )
    assert capsys.readouterr().out.startswith("L2-normalized face embedding, ")
    with np.load(tmp_path / "e.npz") as saved:
        assert saved["files"].tolist() == list(map(str, files))
        np.testing.assert_allclose(saved["embeddings"], [f["embedding"] for f in found], atol=1e-5)
    assert [f["same"] for f in found] == (sims >= t).tolist()
    assert main(["predict", str(run), str(files[0]), str(files[2]), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"    vs [1] {files[2]}: cosine ") and (
        "same person" in lines[1] or "different people" in lines[1]
    )


@needs_olivetti
def test_bad_paths_and_corrupt_files_are_one_line(tmp_path, capsys):
    base = [a for a in TINY if a != str(OLIVETTI)]
    i = base.index("--data-dir")
    cases = {
        f"no {OLIVETTI_FILE} at": [*base[:i], "--data-dir", str(tmp_path / "nowhere"), *base[i + 1 :]],
    }
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / OLIVETTI_FILE).write_bytes(b"MATLAB 5.0 MAT-file, not really" * 10)
    cases["is not the Olivetti file (SHA-256"] = [*base[:i], "--data-dir", str(corrupt), *base[i + 1 :]]
    folder = tmp_path / "people"
    for person in ("ann", "bob", "cid"):
        (folder / person).mkdir(parents=True)
        (folder / person / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cases["cannot read face image"] = [
        *base[:i],
        "--data-dir",
        str(folder),
        *base[i + 1 :],
        "--set",
        "dataset=faces-folder",
    ]
    cases["unknown head 'arc'"] = [*TINY, "--set", "task_kwargs.head=arc"]
    for needle, argv in cases.items():
        out = tmp_path / f"run-{len(needle)}"
        assert main(["train", *argv, "--out", str(out)]) == 2, needle
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("reslab: error: ") and needle in err[0], (needle, err)
        assert not out.exists() or not (out / "checkpoints").exists()


def test_a_folder_of_identity_subfolders_is_read_as_lfw_lays_it_out(tmp_path):
    from PIL import Image

    from reslab.data.faces import load_face_folder

    rng = np.random.default_rng(0)
    for person, n in (("Ann_A", 2), ("Bob_B", 3), ("Cid_C", 1)):
        (tmp_path / person).mkdir()
        for k in range(n):
            Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(
                tmp_path / person / f"{person}_{k + 1:04d}.jpg"
            )
    (tmp_path / "notes.txt").write_text("not a person")
    faces = load_face_folder(tmp_path, size=64)
    assert faces.images.shape == (6, 64, 64) and faces.images.dtype == np.uint8
    assert faces.names == ("Ann_A", "Bob_B", "Cid_C") and faces.identity.tolist() == [0, 0, 1, 1, 1, 2]


@needs_olivetti
def test_the_face_models_train_as_face_embedders_and_a_wrong_size_is_one_line(tmp_path, capsys):
    """An IR-ResNet (issue 33's models) at 32 x 32 grey faces: its embedding output, its logits layer as the
    ArcFace class weight; built for 112 x 112 and given 32 x 32 faces, one line before any training."""
    argv = ["--task", "face", "--model", "iresnet18_plain", "--data-dir", str(OLIVETTI), "--iterations", "2",
            "--batch-size", "8", "--set", "eval_every=2", "--set", "checkpoint_every=2", "--set", "warmup_iters=0",
            "--set", "task_kwargs.image_size=32", "--set", "tensorboard=false", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(["train", *argv, "--set", "model_kwargs.input_size=32", "--out", str(tmp_path / "ir")]) == 0
    assert json.loads((tmp_path / "ir" / "summary.json").read_text())["steps"] == 2
    capsys.readouterr()
    assert main(["train", *argv, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "iresnet18_plain cannot embed 1x32x32 faces" in err[0], err
