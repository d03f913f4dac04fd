"""Foreign CIFAR checkpoints: akamaster/pytorch_resnet_cifar10 recognized and converted exactly, its
download path (file:// URLs, SHA-256 checked, cached), and what is said when a convention cannot be told.

The fixture tests compare with the original repository's own logits (/work/shared/fixtures/
akamaster-cifar10, README there) and skip without it; the rest build an akamaster-style network here
(reslab's layers with the zeros of option A padded on both sides) with random weights and statistics.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reslab.cli import main
from reslab.errors import CheckpointError, ConfigError
from reslab.models import convert, create_model
from reslab.models.blocks import ShortcutA
from reslab.models.weights import load_checkpoint, load_model, read_state_dict

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "akamaster-cifar10"
if not FIXTURE.is_dir():
    FIXTURE = Path("/work/shared/fixtures/akamaster-cifar10")
needs_fixture = pytest.mark.skipif(
    not (FIXTURE / "reference_logits.safetensors").is_file(),
    reason=f"akamaster fixture not found ({FIXTURE}): the four checkpoints and the original code's logits",
)


class _BothSides(nn.Module):
    """akamaster's option A: subsample, then planes // 4 zero channels before and after the input's."""

    def __init__(self, a: ShortcutA) -> None:
        super().__init__()
        self.pad = (a.cout - a.cin) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


def akamaster_style(depth: int, seed: int = 0) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """(the network as akamaster's code computes it, its checkpoint's state dict as that repo saves it)."""
    torch.manual_seed(seed)
    net = create_model("resnet", depth=depth).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # trained-looking statistics and affine parameters
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    for b in net.blocks:
        if isinstance(b.shortcut, ShortcutA) and b.shortcut.cout > b.shortcut.cin:
            b.shortcut = _BothSides(b.shortcut)
    state = {
        "module." + k.replace("fc.", "linear."): v
        for k, v in net.state_dict().items()
        if not k.endswith("num_batches_tracked")  # saved by PyTorch < 0.4.1
    }
    return net, state


def _save(path: Path, state: dict) -> Path:
    torch.save({"state_dict": state, "best_prec1": 91.0}, path)
    return path


# ------------------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("depth", [8, 20])
def test_akamaster_style_checkpoint_converts_exactly(tmp_path, depth):
    net, state = akamaster_style(depth)
    path = _save(tmp_path / f"resnet{depth}-00000000.th", state)
    x = torch.randn(4, 3, 32, 32)
    model = create_model("resnet", depth=depth, pretrained=str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), atol=1e-5, rtol=0)
        # renamed by hand as the user did: loads strictly and computes another network
        renamed = {k.removeprefix("module.").replace("linear.", "fc."): v for k, v in state.items()}
        naive = create_model("resnet", depth=depth).eval()
        naive.load_state_dict(renamed, strict=False)
        assert (naive(x) - net(x)).abs().max() > 0.1


@needs_fixture
@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_akamaster_checkpoints_match_the_original_logits(depth):
    from safetensors.torch import load_file

    ref = load_file(FIXTURE / "reference_logits.safetensors")
    (file,) = FIXTURE.glob(f"resnet{depth}-*.th")
    assert hashlib.sha256(file.read_bytes()).hexdigest() == convert.AKAMASTER_FILES[f"resnet{depth}"][1]
    model = create_model(f"resnet{depth}", pretrained=str(file)).eval()
    rebuilt, meta = load_model(file)  # the architecture told from the tensors
    with torch.no_grad():
        y = model(ref["input"])
        assert (y - ref[f"logits_resnet{depth}"]).abs().max() < 1e-5
        assert torch.equal(rebuilt(ref["input"]), y)
    assert meta["model"] == f"resnet{depth}" and meta["config"]["dataset"] == "cifar10"
    assert meta["mean"] == list(convert.AKAMASTER_MEAN) and "akamaster" in meta["convention"]


def test_conventions_said_or_assumed(tmp_path, capsys):
    _, state = akamaster_style(8)
    assert (
        load_checkpoint(create_model("resnet", depth=8), _save(tmp_path / "a.th", state)).name == "akamaster"
    )
    renamed = {k.removeprefix("module.").replace("linear.", "fc."): v for k, v in state.items()}
    renamed.update(
        {k: torch.tensor(0) for k in create_model("resnet", depth=8).state_dict() if "num_batches" in k}
    )
    torch.save(renamed, tmp_path / "renamed.pth")
    conv = load_checkpoint(create_model("resnet", depth=8), tmp_path / "renamed.pth")
    assert conv.name == "foreign" and "option-A zeros appended" in conv.note and "\n" not in conv.note
    torch.save(create_model("resnet18").state_dict(), tmp_path / "r18.pth")
    conv = load_checkpoint(create_model("resnet18"), tmp_path / "r18.pth")  # option B: nothing about zeros
    assert conv.name == "foreign" and "option-A" not in conv.note
    torch.save(create_model("resnet50").state_dict(), tmp_path / "r50.pth")
    assert "stride in the 3x3" in load_checkpoint(create_model("resnet50"), tmp_path / "r50.pth").note
    with pytest.raises(CheckpointError, match="cannot be told from its tensors"):
        load_model(tmp_path / "renamed.pth")  # no architecture to rebuild from fc-named tensors
    assert main(["eval", str(tmp_path / "renamed.pth")]) == 2  # the CLI: one line, exit 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be told" in err


# --------------------------------------------------------------------------------- the download path


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """An akamaster-style resnet20 file served through a file:// URL; the cache is under TORCH_HOME."""
    net, state = akamaster_style(20, seed=1)
    (tmp_path / "remote").mkdir()
    path = _save(tmp_path / "remote" / "resnet20-abcdef12.th", state)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(convert, "AKAMASTER_BASE", path.parent.as_uri() + "/")
    monkeypatch.setitem(convert.AKAMASTER_FILES, "resnet20", (path.name, sha))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return net, path


def test_pretrained_akamaster_downloads_checks_and_caches(tmp_path, remote):
    net, path = remote
    with pytest.raises(CheckpointError, match=r"not found.*--download"):
        create_model("resnet20", pretrained="akamaster")
    model = create_model("resnet20", pretrained="akamaster", download=True).eval()
    cached = tmp_path / "torch" / "hub" / "checkpoints" / path.name
    assert cached.read_bytes() == path.read_bytes()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), atol=1e-5, rtol=0)
    create_model("resnet20", pretrained="akamaster")  # from the cache now
    cached.write_bytes(cached.read_bytes()[:-1] + b"x")  # corrupt: the full SHA-256 is checked
    with pytest.raises(CheckpointError, match="SHA-256"):
        create_model("resnet20", pretrained="akamaster")
    with pytest.raises(ConfigError, match="no akamaster CIFAR-10 weights for model 'resnet110'"):
        create_model("resnet110", pretrained="akamaster")


def test_cli_init_from_akamaster_says_the_convention(tmp_path, remote, capsys):
    argv = [
        "train", "--model", "resnet20", "--init-from", "akamaster", "--download", "--dataset", "synthetic",
        "--iterations", "1", "--batch-size", "8", "--val-split", "0", "--device", "cpu", "--set", "eval_every=0",
        "--set", "eval_subset=8", "--set", "tensorboard=false", "--set", "threads=1",
        "--set", "warmup_iters=0", "--set", "milestones=[]", "--quiet", "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "recognized akamaster/pytorch_resnet_cifar10" in err and "converted exactly" in err


def _fake_cifar10(root: Path, n: int = 16) -> None:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": list(range(10)) + [0] * (n - 10),
        }
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = b"airplane automobile bird cat deer dog frog horse ship truck".split()
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))


def test_cli_eval_takes_an_akamaster_file(tmp_path, capsys):
    _, state = akamaster_style(8)
    path = _save(tmp_path / "resnet8-00000000.th", state)
    _fake_cifar10(tmp_path / "data")
    code = main(
        [
            "eval",
            str(path),
            "--data-dir",
            str(tmp_path / "data"),
            "--split",
            "test",
            "--out",
            str(tmp_path / "ev"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "convention: recognized akamaster" in out and "(16 images)" in out
    assert read_state_dict(path)["linear.weight"].shape == (10, 64)  # the file itself is untouched


def test_cli_init_from_an_akamaster_file_with_another_number_of_classes(tmp_path, capsys):
    """Fine-tuning akamaster's CIFAR-10 weights on a data set with other classes: the classifier size is
    read from the converted keys (``linear.*`` -> ``fc.*``), the body loads exactly, the head is new."""
    source, state = akamaster_style(8)
    path = _save(tmp_path / "resnet8-00000000.th", state)
    out = tmp_path / "run"
    argv = [
        "train", "--model", "resnet", "--set", "model_kwargs.depth=8", "--init-from", str(path),
        "--num-classes", "100", "--dataset", "synthetic", "--iterations", "1", "--lr", "1e-9",
        "--batch-size", "8", "--val-split", "0", "--device", "cpu", "--set", "eval_every=0",
        "--set", "eval_subset=8", "--set", "tensorboard=false", "--set", "threads=1", "--set", "momentum=0",
        "--set", "weight_decay=0", "--set", "warmup_iters=0", "--set", "milestones=[]", "--quiet",
        "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert "recognized akamaster/pytorch_resnet_cifar10" in capsys.readouterr().err
    from safetensors.torch import load_file

    trained = load_file(out / "checkpoints" / "last.safetensors")
    assert trained["fc.weight"].shape == (100, 64)
    converted = convert.to_reslab(read_state_dict(path), source)[0]
    assert torch.allclose(trained["conv1.weight"], converted["conv1.weight"], atol=1e-6)
