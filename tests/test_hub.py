"""torchvision's ImageNet weights through the torch.hub cache: no download unless asked, SHA-256 checked.

No network: the "remote" file is a ``file://`` URL in tmp_path (the URL table is monkeypatched), holding
a randomly initialized torchvision resnet18 state dict named ``resnet18-<sha256 prefix>.pth``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from reslab.cli import main
from reslab.errors import CheckpointError, ConfigError
from reslab.models import create_model, hub, list_models
from reslab.models.hub import torchvision_weights


def _files(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (hidden temporary files included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def tv_state(tmp_path_factory):
    """(state dict, its file's bytes) of a torchvision resnet18 with seeded random weights."""
    import io

    from torchvision.models import resnet18

    torch.manual_seed(0)
    tv = resnet18()
    for m in tv.modules():  # non-trivial BN statistics, so a loader that skipped buffers would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = tv.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    return state, buf.getvalue()


@pytest.fixture
def remote(tmp_path, monkeypatch, tv_state):
    """The "published" file: tmp_path/remote/resnet18-<prefix>.pth, served through a file:// URL; the
    default cache is tmp_path/torch/hub/checkpoints (TORCH_HOME)."""
    _, data = tv_state
    prefix = hashlib.sha256(data).hexdigest()[:8]
    path = tmp_path / "remote" / f"resnet18-{prefix}.pth"
    path.parent.mkdir()
    path.write_bytes(data)
    monkeypatch.setitem(hub.TORCHVISION_URLS, "resnet18", path.as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return path


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_table_equals_torchvision_enums():
    import torchvision.models as tvm

    enums = {
        "resnet18": tvm.ResNet18_Weights,
        "resnet34": tvm.ResNet34_Weights,
        "resnet50": tvm.ResNet50_Weights,
        "resnet101": tvm.ResNet101_Weights,
        "resnet152": tvm.ResNet152_Weights,
        "resnext50_32x4d": tvm.ResNeXt50_32X4D_Weights,
        "resnext101_32x8d": tvm.ResNeXt101_32X8D_Weights,
        "wide_resnet50_2": tvm.Wide_ResNet50_2_Weights,
        "wide_resnet101_2": tvm.Wide_ResNet101_2_Weights,
    }
    assert {n: e.IMAGENET1K_V1.url for n, e in enums.items()} == hub.TORCHVISION_URLS
    for name, url in hub.TORCHVISION_URLS.items():
        # every name is a reslab model, every file name carries its hash prefix (torch.hub's convention)
        assert name in list_models()
        assert len(hub._hash_prefix(hub._filename(url))) >= 8, url
    # the default cache is torchvision's own: torch.hub.get_dir()/checkpoints
    assert hub.default_cache_dir() == Path(torch.hub.get_dir()) / "checkpoints"


def test_no_weights_for_a_name_lists_the_names_that_have_them(tmp_path):
    with pytest.raises(ConfigError) as e:
        torchvision_weights("resnet20", cache_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "resnet20" in msg and "resnet50" in msg and "wide_resnet101_2" in msg
    with pytest.raises(ConfigError, match="download=True applies only"):
        create_model("resnet18", pretrained=str(tmp_path / "x.pth"), download=True)


def test_absent_without_download_is_one_line_and_creates_nothing(tmp_path, remote):
    before = _files(tmp_path)
    with pytest.raises(CheckpointError) as e:
        create_model("resnet18", pretrained="torchvision")
    msg = str(e.value)
    assert "\n" not in msg and "--download" in msg and "download=True" in msg
    assert remote.name in msg and str(_cache(tmp_path)) in msg
    assert _files(tmp_path) == before  # no cache folder, no file


def test_cached_file_is_used_without_download(tmp_path, remote, monkeypatch, tv_state):
    cache = _cache(tmp_path)
    cache.mkdir(parents=True)
    (cache / remote.name).write_bytes(remote.read_bytes())
    remote.unlink()  # the "network" is gone: the cached file must be enough
    path = torchvision_weights("resnet18")
    assert path == cache / remote.name
    model = create_model("resnet18", pretrained="torchvision")
    got = model.state_dict()
    for k, v in tv_state[0].items():
        assert torch.equal(got[k], v), k
    # an explicit cache_dir is honoured too (and TORCH_HOME's cache is then not consulted)
    other = tmp_path / "other"
    with pytest.raises(CheckpointError, match="not found"):
        torchvision_weights("resnet18", cache_dir=other)
    assert not other.exists()


def test_download_copies_verifies_and_loads_like_torchvision(tmp_path, remote, tv_state):
    from torchvision.models import resnet18

    model = create_model("resnet18", pretrained="torchvision", download=True)
    cache = _cache(tmp_path)
    assert _files(cache) == [remote.name]  # the file alone: no temporary file left
    assert (cache / remote.name).read_bytes() == remote.read_bytes()

    tv = resnet18()
    tv.load_state_dict(tv_state[0])
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model.eval()(x), tv.eval()(x)
    assert a.shape == (2, 1000)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

    # a second call finds (and re-verifies) the cached copy: the remote may be gone
    remote.unlink()
    assert torchvision_weights("resnet18", download=True) == cache / remote.name


def test_corrupt_download_leaves_nothing(tmp_path, remote):
    data = bytearray(remote.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the name's hash prefix no longer matches
    remote.write_bytes(bytes(data))
    before = _files(tmp_path)
    with pytest.raises(CheckpointError) as e:
        torchvision_weights("resnet18", download=True, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "SHA-256" in msg and "nothing was saved" in msg
    assert _files(tmp_path) == before  # no file, no temporary, not even the cache folders

    # the same with an existing cache folder: it stays, empty
    _cache(tmp_path).mkdir(parents=True)
    with pytest.raises(CheckpointError, match="SHA-256"):
        torchvision_weights("resnet18", download=True, progress=False)
    assert _files(_cache(tmp_path)) == []


def test_network_failure_leaves_nothing(tmp_path, remote, monkeypatch):
    monkeypatch.setitem(hub.TORCHVISION_URLS, "resnet18", (tmp_path / "gone" / remote.name).as_uri())
    with pytest.raises(CheckpointError) as e:
        torchvision_weights("resnet18", download=True, progress=False)
    assert "\n" not in str(e.value) and str(e.value).startswith("cannot download file://")
    assert not (tmp_path / "torch").exists()


def test_corrupt_cached_file_is_refused_then_replaced_on_download(tmp_path, remote):
    cache = _cache(tmp_path)
    cache.mkdir(parents=True)
    cached = cache / remote.name
    cached.write_bytes(remote.read_bytes()[:1000])  # a torn copy (another tool's interrupted download)
    with pytest.raises(CheckpointError) as e:
        torchvision_weights("resnet18")
    assert "corrupt" in str(e.value) and "--download" in str(e.value) and "\n" not in str(e.value)
    assert cached.stat().st_size == 1000  # untouched without --download
    assert torchvision_weights("resnet18", download=True, progress=False) == cached
    assert cached.read_bytes() == remote.read_bytes() and _files(cache) == [remote.name]


def _train_argv(out: Path) -> list[str]:
    return [
        "train", "--model", "resnet18", "--init-from", "torchvision", "--dataset", "synthetic",
        "--iterations", "1", "--batch-size", "8", "--val-split", "0", "--device", "cpu", "--set", "eval_every=0",
        "--set", "eval_subset=8", "--set", "tensorboard=false", "--set", "threads=2",
        "--set", "warmup_iters=0", "--set", "milestones=[]", "--quiet", "--out", str(out),
    ]  # fmt: skip


def test_cli_missing_cache_is_exit_2_one_line(tmp_path, remote, capsys):
    out = tmp_path / "run"
    before = _files(tmp_path)
    assert main(_train_argv(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "--download" in err[0] and remote.name in err[0] and "Traceback" not in err[0]
    assert _files(tmp_path) == before  # no run directory, no cache

    # a model without published weights fails at validation, before any data or model
    argv = _train_argv(out)
    argv[argv.index("resnet18")] = "resnet20"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no torchvision ImageNet weights for model 'resnet20'" in err[0], err


def test_cli_fine_tunes_from_downloaded_weights(tmp_path, remote, tv_state, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    assert main([*_train_argv(out), "--download", "--freeze-backbone"]) == 0, capsys.readouterr().err
    assert _files(_cache(tmp_path)) == [remote.name]
    saved = load_file(out / "checkpoints" / "last.safetensors")
    for k in ("conv1.weight", "bn1.running_mean", "layer4.1.conv2.weight"):
        assert torch.equal(saved[k], tv_state[0][k]), k  # frozen backbone: torchvision's weights
    assert saved["fc.weight"].shape == (10, 512)  # the 1000-class head replaced for the 10 classes
    config = json.loads(saved_meta(out / "checkpoints" / "last.safetensors")["config"])
    assert config["init_from"] == "torchvision" and config["download"] is True

    # resuming needs no weights file: the checkpoint holds every weight (cache emptied, no --download)
    (out / "summary.json").unlink()  # as if killed after its last checkpoint
    for f in _cache(tmp_path).iterdir():
        f.unlink()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert _files(_cache(tmp_path)) == []


def saved_meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return f.metadata()
