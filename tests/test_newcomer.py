"""A newcomer's first hour (issue 31): every command that takes a run works on a tiny run of every
registered task, or refuses in one line (the matrix below pins which); and what the issue found broken:
a video model name to ``reslab features``, a huge image to a super-resolution run, ``--model`` against a
recipe's ``model_kwargs``, files of mode 0600, a silent ``tensorboard=true``, a warm-up longer than the
run, unitless percentages, workers beyond the CPUs; with ``train --print-config``, the start-up header,
``predict FOLDER``, ``models --json`` and ``data sample``.

The tiny runs are made once for the module (a few seconds each, in-process) with the knobs the task-run
tests use (tests/test_task_runs.py, tests/test_task_runs_video_sr.py)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from reslab.analysis.command import ANALYSES
from reslab.cli import build_parser, main
from reslab.precision import auto_reason
from reslab.tasks import TASKS
from test_task_runs import HEAD
from test_task_runs import TINY as SCENE_TINY
from test_task_runs_video_sr import COMMON
from test_task_runs_video_sr import TINY as LOADER_TINY

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")
HAVE_DATA = (SYSTEM_FMNIST / "train-images-idx3-ubyte.gz").is_file()
needs_data = pytest.mark.skipif(
    not HAVE_DATA,
    reason="Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)",
)
# Every registered task once (an alias such as "sr" names a task already here).
TASK_NAMES = list({cls: name for name, cls in reversed(list(TASKS.items()))}.values())[::-1]
SHORT = [
    "--iterations",
    "2",
    "--set",
    "eval_every=2",
    "--set",
    "checkpoint_every=2",
    "--set",
    "warmup_iters=0",
]
OLIVETTI = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "olivetti-faces"
HAVE_OLIVETTI = (OLIVETTI / "olivettifaces.mat").is_file()  # the face task's data (a fixture, absent on CI)
NEEDS_OLIVETTI = {"face"}
TINY_RUNS = {
    "classification": [
        "--model", "resnet20", "--subset", "64", "--val-split", "16", "--batch-size", "16", "--device", "cpu",
        "--seed", "1", "--set", "eval_subset=32", "--set", "threads=1", "--set", "tensorboard=false",
        "--set", "log_every=1", "--data-dir", str(SYSTEM_FMNIST),
    ],
    "detection": [*SCENE_TINY, *HEAD["detection"]],
    "segmentation": [*SCENE_TINY, *HEAD["segmentation"]],
    "video": [*COMMON, *LOADER_TINY["video"]],
    "super-resolution": [*COMMON, *LOADER_TINY["super-resolution"]],
    "style": [*COMMON, "--batch-size", "2", "--set", "model_kwargs.width=4", "--set", "model_kwargs.units=1",
              "--set", "task_kwargs.crop=32", "--set", "task_kwargs.content_size=64",
              "--set", "task_kwargs.style_size=64", "--set", "task_kwargs.loss_network=resnet20"],
    "face": ["--model", "resnet20", "--data-dir", str(OLIVETTI), "--device", "cpu", "--seed", "1",
             "--set", "task_kwargs.image_size=32", "--set", "threads=1", "--set", "tensorboard=false"],
    "rl": ["--env", "MinAtar/Breakout-v1", "--algo", "ppo", "--model", "minatar_cnn", "--device", "cpu",
           "--batch-size", "8", "--set", "task_kwargs.n_envs=1", "--set", "task_kwargs.n_steps=8",
           "--set", "task_kwargs.n_epochs=1", "--set", "threads=1"],
}  # fmt: skip
NEEDS_FMNIST = {"classification", "detection", "segmentation", "video"}
DATA_DIRS = {"face": OLIVETTI}  # `data sample --data-dir`: the task's data where it is not Fashion-MNIST

# What each command refuses, by task (a needle of its one line); every other pair must succeed.
ANALYZE = "reslab analyze measures"
EXPORTS = ("export-onnx", "export-torch-export", "export-safetensors")
REFUSED: dict[tuple[str, str], str] = {
    ("predict", "video"): "reslab eval",
    ("predict", "super-resolution"): "give --out",
    ("predict-out", "classification"): "predictions are printed",
    ("predict-out", "video"): "reslab eval",
    ("features", "detection"): "give the backbone's name",
    ("features", "segmentation"): "give the backbone's name",
    ("features", "super-resolution"): "none to list",
    ("predict", "style"): "give --out",
    ("features", "style"): "none to list",
    ("sample", "video"): "not image files",
    **{(e, t): "export_dense_onnx" for e in EXPORTS for t in ("detection", "segmentation")},
    **{(e, "video"): "5-D" for e in EXPORTS},
    **{(f"analyze-{a}", t): ANALYZE for a in ANALYSES for t in TASK_NAMES if t != "classification"},
    ("predict-out", "face"): "predictions are printed",
    # an rl run plays its environment (reslab predict RUN --out episode.gif, no image files)
    ("predict", "rl"): "--out episode.gif",
    ("predict-out", "rl"): "--out episode.gif",
    ("sample", "rl"): "--out episode.gif",
    **{(e, "rl"): "stable-baselines3 agent" for e in (*EXPORTS, "features")},
}


def _analyze(name: str):
    return lambda run, out, image, task: ["analyze", name, run, "--device", "cpu", "--samples", "8",
                                          "--batch-size", "4", "--resolution", "3", "--lesion-samples", "2",
                                          "--max-k", "2", "--path-samples", "2", "--out", out, "--quiet"]  # fmt: skip


def _export(fmt: str):
    return lambda run, out, image, task: ["export", run, "--format", fmt, "--out", out]


# command -> argv for (run directory, an output path, the input image, task)
COMMANDS = {
    "eval": lambda run, out, image, task: ["eval", run, "--device", "cpu", "--out", out],
    "predict": lambda run, out, image, task: ["predict", run, image, "--device", "cpu"],
    "predict-out": lambda run, out, image, task: ["predict", run, image, "--device", "cpu", "--out", out + ".png"],
    **{f"export-{fmt}": _export(fmt) for fmt in ("onnx", "torch-export", "safetensors")},
    "features": lambda run, out, image, task: ["features", run],
    "verify": lambda run, out, image, task: ["verify", run],
    **{f"analyze-{a}": _analyze(a) for a in ANALYSES},
    "resume": lambda run, out, image, task: ["train", "--resume", out, "--iterations", "3", "--accept-change",
                                             "iterations"],
    "sample": lambda run, out, image, task: ["data", "sample", "--task", task, "--data-dir", str(DATA_DIRS.get(task, SYSTEM_FMNIST)),
                                             "--out", out + ".png"],
}  # fmt: skip


def _call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_every_registered_task_has_a_tiny_run():
    missing = [t for t in TASK_NAMES if t not in TINY_RUNS]
    assert not missing, f"add the flags of a tiny run of {missing} to TINY_RUNS (and its refusals to REFUSED)"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny run per task (2 iterations; the classification run prints its header), an input image,
    and the run's printed output; scenes and clips cached in the module's own folder."""
    root = tmp_path_factory.mktemp("tiny")
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
    runs, printed = {}, {}
    for task in TASK_NAMES:
        if (
            (task in NEEDS_FMNIST and not HAVE_DATA)
            or (task in NEEDS_OLIVETTI and not HAVE_OLIVETTI)
            or task not in TINY_RUNS
        ):
            continue
        run = root / task
        quiet = [] if task == "classification" else ["--quiet"]
        code, out, err = _call(["train", "--task", task, *TINY_RUNS[task], *SHORT, "--out", str(run), *quiet])
        assert code == 0, err
        runs[task], printed[task] = run, (out, err)
    image = root / "input.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    yield {"root": root, "runs": runs, "printed": printed, "image": image}
    mp.undo()


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_works_or_refuses_in_one_line(command, task, tiny, tmp_path):
    if task not in tiny["runs"]:
        pytest.skip(
            "no tiny run: Debian's dataset-fashion-mnist (or the Olivetti fixture) is absent, or no TINY_RUNS entry"
        )
    run = tiny["runs"][task]
    out = tmp_path / "out"
    if command == "resume":  # a longer run, on a copy (the other commands read the original)
        shutil.copytree(run, out)
    argv = COMMANDS[command](str(run), str(out), str(tiny["image"]), task)
    code, stdout, stderr = _call(argv)
    assert "Traceback" not in stderr, stderr
    needle = REFUSED.get((command, task))
    if needle is None:
        assert code == 0, f"{command} {task}: exit {code}: {stderr}"
        assert stdout.strip(), "a command that succeeds says what it did"
        if command == "resume":
            assert json.loads((out / "summary.json").read_text())["steps"] == 3
        elif "--out" in argv:
            target = Path(argv[argv.index("--out") + 1])
            assert target.exists(), target
    else:
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1, (command, task, code, stderr)
        assert lines[0].startswith("reslab: error: ") and needle in lines[0], lines[0]
        assert not list(tmp_path.iterdir()), "a refusal writes nothing"


MODEL_NAMES = [
    "resnet20",
    "resnet50",
    "densenet121",
    "r3d_18",
    "resnet3d_18",
    "video_resnet",
    "edsr_baseline_x2",
]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_features_of_every_kind_of_model_name(name, capsys):
    """A video model's stages are clips (N, C, T, H, W); before, ``reslab features r3d_18`` was a
    traceback (``too many values to unpack``)."""
    from reslab.models import model_info

    assert main(["features", name, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    size = model_info(name)["input_size"]
    assert info["input_size"] == list(size) and info["stages"]
    for stage in info["stages"]:
        assert len(stage["shape"]) == len(size) + 1  # the batch of one
    if len(size) == 4:
        assert main(["features", name, "--input-size", "3,64,64"]) == 2
        assert "takes clips, C,T,H,W" in capsys.readouterr().err


@needs_data
def test_features_of_a_video_run_lists_its_clip_stages(tiny, capsys):
    assert main(["features", str(tiny["runs"]["video"])]) == 0
    text = capsys.readouterr().out
    assert "forward_stages at input 1x4x48x48" in text and "layer4" in text


# ------------------------------------------------------------------------------- the items


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header says ``width`` x ``height`` (its pixels never decode: a guard must read the size
    first)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_a_huge_image_is_refused_by_size_before_it_is_decoded(tiny, tmp_path, capsys):
    """12000x12000 at x4 was a 27.6 GB allocation and a traceback; now one line naming the limit, and the
    other images are still upscaled."""
    huge = tmp_path / "huge.png"
    _png_header(huge, 12000, 12000)
    outs = tmp_path / "outs"
    code = main(
        ["predict", str(tiny["runs"]["super-resolution"]), str(huge), str(tiny["image"]), "--out", str(outs)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "12000x12000" in err[0] and "48000x48000" in err[0] and "8192x8192" in err[0]
    assert [p.name for p in outs.iterdir()] == ["input_x4.png"]


def test_a_recipes_model_kwargs_stay_with_its_model(tmp_path, monkeypatch, capsys):
    """``--task video --model r3d_18`` passed the recipe's ``depth`` to r3d_18 (``unexpected keyword
    argument``); the recipe's model_kwargs are now dropped with a note, and --set gives the new model's."""
    from reslab.train import load_recipe

    monkeypatch.chdir(tmp_path)
    assert load_recipe("video").model_kwargs and load_recipe("video", model="r3d_18").model_kwargs == {}
    assert (
        main(
            [
                "train",
                "--task",
                "video",
                "--model",
                "r3d_18",
                "--set",
                "model_kwargs.width=4",
                "--print-config",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    cfg = yaml.safe_load(out)
    assert cfg["model"] == "r3d_18" and cfg["model_kwargs"] == {"width": 4}
    assert out.startswith("# model r3d_18 replaces the recipe's video_resnet; its model_kwargs (depth=10")
    # the wrong kind of model is now refused as such, not by a keyword it does not take
    assert (
        main(["train", "--task", "super-resolution", "--model", "resnet20", "--iterations", "1", "--quiet"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trains super-resolution models; 'resnet20' is image-classification" in err[0], (
        err
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_print_config_says_where_each_value_came_from_and_reads_back(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--recipe", "fashion_mnist_demo", "--lr", "0.3", "--iterations", "7", "--set", "pad=3"]
    assert main([*argv, "--print-config"]) == 0
    text = capsys.readouterr().out
    lines = dict(line.split("  # ") for line in text.splitlines())
    assert (
        lines["lr: 0.3"] == "--lr" and lines["pad: 3"] == "--set" and lines["iterations: 7"] == "--iterations"
    )
    assert lines["epochs: null"] == "--iterations"  # the budget is one of them
    assert lines["model: resnet20"] == "recipe fashion_mnist_demo" and lines["cutout: 0"] == "default"
    assert lines["recipe: fashion_mnist_demo"] == "--recipe"
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
    saved = tmp_path / "mine.yaml"
    saved.write_text(text)
    assert main(["train", "--recipe", str(saved), "--print-config"]) == 0
    again = yaml.safe_load(capsys.readouterr().out)
    assert {k: v for k, v in again.items() if k != "recipe"} == {
        k: v for k, v in yaml.safe_load(text).items() if k != "recipe"
    }


@needs_data
def test_the_header_says_precision_parameters_schedule_and_data(tiny):
    out, err = tiny["printed"]["classification"]
    header = out.split("\nstep ")[0]
    assert "training resnet20 (0.27M params: 0.27M trainable, none frozen)" in header
    assert "fashion-mnist (48 train, 16 val, 10000 test); evaluated on the first 32 of each split" in header
    assert f"cpu, {auto_reason('cpu')}" in header  # amp auto: bf16 where this CPU has it natively, and why
    assert "schedule:  sgd, linear decay from lr 0.2 to 0 at step 2" in header
    assert not err.strip(), err  # the warm-up fits (warmup_iters=0): no warning


def test_files_written_atomically_get_the_umasks_mode(tmp_path):
    """mkstemp's 0600 was kept by config.yaml, summary.json, checkpoints, eval.json, predict PNGs."""
    from reslab._io import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    write_json(tmp_path / "b.json", {"x": 1})
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o666 & ~old


@needs_data
def test_a_runs_files_are_not_private(tiny):
    run = tiny["runs"]["classification"]
    mask = os.umask(0o022)
    os.umask(mask)
    for name in (
        "config.yaml",
        "summary.json",
        "curves.png",
        "checkpoints/last.safetensors",
        "checkpoints/last.state.pt",
    ):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


@needs_data
def test_tensorboard_true_without_tensorboard_is_a_warning(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails: not installed
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base = ["train", *TINY_RUNS["classification"], *SHORT, "--set", "log_every=2"]
    assert main([*base, "--set", "tensorboard=true", "--out", str(tmp_path / "a")]) == 0
    assert "tensorboard=true, but tensorboard is not installed" in capsys.readouterr().err
    assert main([*base, "--set", "tensorboard=auto", "--out", str(tmp_path / "b")]) == 0
    assert "tensorboard" not in capsys.readouterr().err  # auto: silently without
    assert not (tmp_path / "a" / "tensorboard").exists()


def test_a_warm_up_as_long_as_the_run_is_said():
    from reslab.config import TrainConfig
    from reslab.train.schedule import Schedule

    cfg = TrainConfig(iterations=2, warmup_iters=200, schedule="linear", lr=0.2)
    s = Schedule.from_config(cfg, 2, 3)
    assert s(1) == pytest.approx(0.2 * 2 / 2)  # the run ends at the peak
    assert "warmup_iters=200 fills the whole run of 2 iterations" in (s.warning(200) or "")
    assert "the whole run: it ends at the peak lr" in s.describe()
    fits = Schedule.from_config(cfg.replace(iterations=400), 400, 3)
    assert fits.warning(200) is None
    assert (
        fits.describe()
        == "linear warm-up from 0 to lr 0.2 over 200 steps, then linear decay from lr 0.2 to 0 at step 400"
    )


def test_percent_metrics_say_so():
    from reslab.train.progress import metric_text

    assert metric_text("garment_error", 80.0) == "garment_error 80.00%"
    assert metric_text("error", 7.1) == "err 7.10%"
    assert metric_text("map_50", 0.81234) == "map_50 0.8123"


def test_the_device_option_is_the_same_everywhere():
    parser = build_parser()
    for argv in (["eval", "r"], ["predict", "r", "x.png"], ["analyze", "lesion", "r"], ["train"]):
        args = parser.parse_args([*argv, "--device", "cuda:0"])
        assert args.device == "cuda:0", argv
        default = parser.parse_args(argv).device
        assert default in ("auto", None), argv  # train: None = the recipe's (auto)


def test_imagefolder_workers_are_capped_by_the_cpus(tmp_path, monkeypatch):
    from PIL import Image

    from reslab.data import make_imagefolder_loaders
    from reslab.data.folder import FolderLoader

    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 80, 0, 0)).save(tmp_path / split / cls / f"{i}.png")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    loaders = make_imagefolder_loaders(tmp_path, 2, workers=8, image_size=8)
    assert loaders.train.num_workers == 1 and loaders.val.num_workers == 1
    import torch

    folder = FolderLoader(
        loaders.train.dataset, 2, device=torch.device("cpu"), workers=8, seed=0, channels_last=False
    )
    assert folder.workers == 1


@needs_data
def test_predict_a_folder_reads_its_image_files_in_order(tiny, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(tiny["image"], folder / "b.png")
    _jpeg(tiny["image"], folder / "a.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    assert main(["predict", str(tiny["runs"]["classification"]), str(folder), "--json", "--topk", "1"]) == 0
    found = json.loads(capsys.readouterr().out)["predictions"]
    assert [Path(p["file"]).name for p in found] == ["a.jpg", "b.png"]
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tiny["runs"]["classification"]), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a folder without image files" in err[0]


def _jpeg(src: Path, dst: Path) -> None:
    from PIL import Image

    with Image.open(src) as im:
        im.convert("RGB").save(dst)


def test_models_json_lists_the_catalogue(capsys):
    assert main(["models"]) == 0
    table = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert main(["models", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == table
    assert main(["models", "--info", "r3d_18", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["input_size"] == [3, 16, 112, 112] and one["task"] == "video-classification"
    assert main(["models", "zz*", "--json"]) == 2


@needs_data
def test_a_sample_scene_is_an_input_of_predict(tiny, tmp_path, capsys):
    """``reslab data sample --task detection``: a test scene of the recipe's scenes (64x64), which
    ``reslab predict`` of a detection run takes."""
    from PIL import Image

    scene = tmp_path / "scene.png"
    assert (
        main(["data", "sample", "--task", "detection", "--data-dir", str(SYSTEM_FMNIST), "--out", str(scene)])
        == 0
    )
    assert capsys.readouterr().out.startswith(f"{scene}: test scene 0 (64x64): ")
    with Image.open(scene) as im:
        assert im.size == (64, 64) and im.mode == "L"
    assert main(["data", "sample", "--task", "detection", "--out", str(scene)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", str(tiny["runs"]["detection"]), str(scene), "--score-threshold", "0"]) == 0
    assert "detections" in capsys.readouterr().out
