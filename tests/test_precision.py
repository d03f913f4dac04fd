"""``amp: auto`` (issue 32): bf16 autocast on CPUs that multiply bf16 natively, fp32 elsewhere, decided by a
run-time probe (mocked both ways here); what stays fp32 under autocast (BatchNorm statistics, the loss,
master weights, gradients, optimizer state, EMA); evaluation in the run's precision; and the experiment
identity rule reading a stored ``amp: auto`` as the precision the run recorded."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import yaml

from reslab import precision
from reslab.config import TrainConfig
from reslab.precision import cpu_bf16_probe, precision_reason, recorded_amp, resolve_amp

CPU = torch.device("cpu")
FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n"


@pytest.fixture
def probe(monkeypatch, tmp_path):
    """Set what the probe sees: torch's capability word and the CPU's flags (None: no /proc/cpuinfo,
    the private torch fallback answers ``fallback``)."""

    def set_cpu(capability: str, flags: str | None, fallback: bool = False) -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        info = tmp_path / "cpuinfo"
        if flags is not None:
            info.write_text(FLAGS.format(extra=flags))
        monkeypatch.setattr(precision, "CPUINFO", info if flags is not None else tmp_path / "missing")
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: fallback, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
        cpu_bf16_probe.cache_clear()

    yield set_cpu
    cpu_bf16_probe.cache_clear()


@pytest.mark.parametrize(
    ("capability", "flags", "fallback", "native", "words"),
    [
        ("AVX2", "avx512_bf16", True, False, "torch capability AVX2"),  # the tier rules first
        ("AVX512", "avx512_vnni", True, False, "no AVX512-BF16/AMX-BF16 (/proc/cpuinfo"),  # flags beat torch
        ("AVX512", "avx512_bf16", False, True, "AVX512-BF16 (/proc/cpuinfo; torch capability AVX512)"),
        ("AVX512", "amx_bf16 amx_tile", False, True, "AMX-BF16"),
        ("AVX512", None, True, True, "AVX512-BF16 (torch.cpu's probe"),  # no /proc/cpuinfo: the fallback
        ("AVX512", None, False, False, "no AVX512-BF16/AMX-BF16 (torch.cpu's probe"),
        ("DEFAULT", None, True, False, "torch capability DEFAULT"),
    ],
)
def test_auto_is_bf16_exactly_where_the_probe_finds_native_bf16(
    probe, capability, flags, fallback, native, words
):
    probe(capability, flags, fallback)
    ok, why = cpu_bf16_probe()
    assert ok is native and words in why
    want = torch.bfloat16 if native else None
    assert resolve_amp("auto", CPU) == want
    assert resolve_amp("auto", torch.device("cuda")) == torch.bfloat16  # CUDA: bf16 whatever the CPU
    assert resolve_amp("off", CPU) is None and resolve_amp("bf16", CPU) == torch.bfloat16
    reason = precision_reason("auto", CPU, want)  # the header's words: which, and why
    assert reason.startswith(
        "bf16 autocast (amp=auto: native bf16" if native else "fp32 (amp=auto: this CPU has no"
    )
    assert words in reason


def test_the_probe_reads_this_machine_without_error():
    cpu_bf16_probe.cache_clear()
    ok, why = cpu_bf16_probe()
    assert isinstance(ok, bool) and why
    assert precision.cpu_has_native_bf16() is ok


def _bf16_session(ema_decay: float = 0.999) -> SimpleNamespace:
    """What :func:`reslab.train.engine.train_step` needs of a session: a synthetic ResNet-8 run in bf16."""
    from reslab.tasks.base import Dist, Runtime
    from reslab.tasks.classification import Classification
    from reslab.train.setup import EMA, make_optimizer

    cfg = TrainConfig(dataset="synthetic", iterations=2, batch_size=16, model="resnet", ema_decay=ema_decay)
    cfg.update({"model_kwargs": {"depth": 8}, "amp": "bf16", "tta_flip": True})
    cfg.update({"data_kwargs": {"shape": [1, 12, 12], "num_classes": 3, "train_size": 64, "test_size": 16}})
    rt = Runtime(CPU, Dist(), False, torch.bfloat16)
    torch.manual_seed(0)
    task = Classification(cfg.validate(), rt)
    model = task.build_model(cfg, init=True)
    opt = make_optimizer(model, cfg)
    ema = EMA(model, ema_decay)
    return SimpleNamespace(
        cfg=cfg, rt=rt, task=task, model=model, fmodel=model, optimizer=opt, ema=ema, step=0
    )


def test_bf16_autocast_keeps_statistics_loss_weights_and_optimizer_state_in_fp32():
    from reslab.train.engine import train_step

    s = _bf16_session()
    bns = [m for m in s.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = bns[0].running_mean.clone()
    seen: list[torch.dtype] = []
    conv = next(m for m in s.model.modules() if isinstance(m, torch.nn.Conv2d))
    hook = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    loss, _, _ = train_step(s, next(s.task.loader.batches()))
    hook.remove()
    assert seen == [torch.bfloat16]  # autocast was on: the convolution ran in bf16...
    assert loss.dtype == torch.float32  # ...the loss in fp32
    for bn in bns:  # BatchNorm statistics accumulate in fp32
        assert bn.running_mean.dtype == bn.running_var.dtype == torch.float32
    assert not torch.equal(bns[0].running_mean, before)  # (and they were updated)
    for p in s.model.parameters():  # master weights and their gradients
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
    states = [st["momentum_buffer"] for st in s.optimizer.state.values()]
    assert states and all(b.dtype == torch.float32 for b in states)  # the optimizer state
    assert all(t.dtype == torch.float32 for t in s.ema.module.state_dict().values() if t.is_floating_point())


def test_evaluation_runs_in_the_runs_precision_and_with_its_flips():
    s = _bf16_session()
    calls: list[tuple[torch.dtype, tuple[int, ...]]] = []
    conv = next(m for m in s.model.modules() if isinstance(m, torch.nn.Conv2d))
    hook = conv.register_forward_hook(lambda m, i, o: calls.append((o.dtype, tuple(i[0].shape))))
    err = s.task.evaluate("test", s.model)["error"]
    hook.remove()
    assert 0 <= err <= 100
    assert {dtype for dtype, _ in calls} == {torch.bfloat16}
    assert len(calls) == 2  # tta_flip: each batch of 16 and its mirror image


def test_evaluating_saved_weights_uses_the_recorded_precision():
    assert recorded_amp({"precision": "bf16", "amp": "auto"}, CPU) == torch.bfloat16
    assert recorded_amp({"precision": "fp32", "amp": "auto"}, torch.device("cuda")) is None
    assert recorded_amp({"amp": "off"}, CPU) is None  # older runs: their amp resolved here


def test_a_stored_auto_reads_as_the_precision_the_run_recorded(tmp_path):
    from reslab.config import config_difference
    from reslab.experiments.plan import config_mismatch, continued_config, stored_run_config

    # the identity rule: a stored auto meets a wanted word as the precision it recorded, and auto as auto
    assert config_difference({"amp": "auto", "precision": "fp32"}, {"amp": "off"}) == []
    assert config_difference({"amp": "auto", "precision": "bf16"}, {"amp": "off"}) == [("amp", "bf16", "off")]
    assert config_difference({"amp": "auto", "precision": "bf16"}, {"amp": "auto"}) == []
    assert config_difference({"amp": "auto"}, {"amp": "off"}) == [("amp", "auto", "off")]  # unknown
    assert config_difference({"amp": "off", "precision": "bf16"}, {"amp": "bf16"}) != []  # a word is a word
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"amp": "auto", "seed": 1}))
    assert stored_run_config(run) == {"amp": "auto", "seed": 1}  # nothing recorded: unknown
    (run / "config.yaml").write_text(
        yaml.safe_dump({"amp": "auto", "seed": 1}) + "# precision: bf16 autocast\n"
    )
    assert stored_run_config(run)["precision"] == "bf16"  # not trained yet: what config.yaml says
    (run / "summary.json").write_text(json.dumps({"finished": True}))  # a summary older than the field
    assert stored_run_config(run)["precision"] == "fp32"
    (run / "summary.json").write_text(json.dumps({"finished": True, "precision": "bf16"}))
    assert config_mismatch(stored_run_config(run), {"amp": "off"}) == ("amp", "bf16", "off")
    assert config_mismatch(stored_run_config(run), {"amp": "bf16", "seed": 1}) is None
    # continuing a run started as auto keeps the word auto where it computed what the plan asks
    assert continued_config({"amp": "bf16", "seed": 1}, run) == {"amp": "auto", "seed": 1}
    assert continued_config({"amp": "off", "seed": 1}, run) == {"amp": "off", "seed": 1}


def test_the_cpu_budgets_pin_fp32_and_the_paper_budget_keeps_auto():
    from reslab.experiments.budgets import BUDGETS

    assert all(BUDGETS[b].overrides.get("amp") == "off" for b in ("smoke", "quick", "standard"))
    assert "amp" not in BUDGETS["paper"].overrides


def test_a_resumed_auto_run_keeps_the_precision_its_checkpoint_recorded(probe, tmp_path):
    from safetensors.torch import save_file

    from reslab.train.session import run_amp

    probe("AVX512", "avx512_bf16")  # a native-bf16 CPU: a fresh auto run computes in bf16
    run = SimpleNamespace(dir=tmp_path)
    cfg = TrainConfig(amp="auto")
    assert run_amp(cfg, run, CPU) == torch.bfloat16
    (tmp_path / "checkpoints").mkdir()
    meta = {"config": json.dumps({"amp": "auto", "precision": "fp32"})}  # started on an fp32 machine
    save_file({"w": torch.zeros(1)}, str(tmp_path / "checkpoints" / "last.safetensors"), metadata=meta)
    assert run_amp(cfg, run, CPU) is None
    assert "started in, kept" in precision_reason("auto", CPU, None)  # the header/summary say so
    assert run_amp(TrainConfig(amp="bf16"), run, CPU) == torch.bfloat16  # an explicit word is obeyed
