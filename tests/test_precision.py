"""train.precision "auto" on a CPU: bf16 autocast only where the CPU has native bf16 and the
model's own forward+backward measures clearly faster in it; float32 weights either way. The
decision is tested with injected capabilities and timings (no real timing is asserted)."""

import json

import pytest
import torch

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.errors import TrainingError
from minigpt_tui.core.models import build_model
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.training import devices
from minigpt_tui.core.training.devices import (
    BF16_MIN_SPEEDUP,
    BF16_MIN_WIDTH,
    Precision,
    choose_cpu_precision,
    cpu_has_native_bf16,
    probe_bf16,
    resolve_precision,
)
from minigpt_tui.core.training.trainer import Trainer

from kit import stop_and_resume, tiny_config

CPU = torch.device("cpu")


def test_a_cpu_without_native_bf16_stays_float32_and_is_not_measured():
    chosen = choose_cpu_precision(False, 2.0, 1.0)  # even timings that favour bf16 do not count
    assert chosen.dtype == torch.float32 and "no native bf16" in chosen.note and chosen.bf16_speedup is None

    def probe():
        raise AssertionError("no probe on a CPU without native bf16")

    assert resolve_precision("auto", CPU, probe, native_bf16=False).dtype == torch.float32


@pytest.mark.parametrize("fp32_s, bf16_s, dtype", [
    (0.030, 0.020, torch.bfloat16),  # 1.5x: clearly faster
    (0.030, 0.030 / BF16_MIN_SPEEDUP, torch.bfloat16),  # exactly the threshold
    (0.030, 0.027, torch.float32),  # 1.11x: not worth bf16's rounding
    (0.001, 0.0016, torch.float32),  # a tiny model: autocast's casts cost more than they save
])
def test_auto_picks_bf16_only_when_the_probe_finds_it_clearly_faster(fp32_s, bf16_s, dtype):
    chosen = resolve_precision("auto", CPU, lambda: (fp32_s, bf16_s), native_bf16=True)
    assert chosen.dtype == dtype
    assert chosen.bf16_speedup == pytest.approx(fp32_s / bf16_s)
    assert f"{fp32_s / bf16_s:.2f}x" in chosen.note  # the measured speed-up is what gets recorded


def test_a_model_too_narrow_for_bf16_is_not_measured():
    def probe():
        raise AssertionError("too narrow to measure")

    chosen = resolve_precision("auto", CPU, probe, native_bf16=True, width=BF16_MIN_WIDTH // 2)
    assert chosen.dtype == torch.float32 and "too narrow" in chosen.note
    assert resolve_precision("auto", CPU, lambda: (2.0, 1.0), native_bf16=True, width=BF16_MIN_WIDTH).dtype \
        == torch.bfloat16


def test_named_precisions_are_taken_as_they_are():
    def probe():
        raise AssertionError("named precisions are not measured")

    assert resolve_precision("fp32", CPU, probe, native_bf16=True) == Precision(torch.float32)
    assert resolve_precision("bf16", CPU, probe, native_bf16=False) == Precision(torch.bfloat16)
    assert resolve_precision("auto", CPU, None, native_bf16=True).dtype == torch.float32  # nothing measured
    with pytest.raises(TrainingError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", CPU)


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_native_bf16({"avx2", "avx512f", "avx512_bf16"})
    assert cpu_has_native_bf16({"amx_tile", "amx_bf16"})
    assert cpu_has_native_bf16({"fp", "asimd", "bf16"})  # Arm's FEAT_BF16
    assert not cpu_has_native_bf16({"avx2", "avx512f", "fma"})
    assert not cpu_has_native_bf16(set())


def test_the_probe_leaves_no_trace():
    model = build_model(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=8, dropout=0.1), 20)
    model.eval()
    rng = torch.get_rng_state()
    fp32_s, bf16_s = probe_bf16(model, 2, 8)
    assert fp32_s > 0 and bf16_s > 0
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's RNG: a run's losses do not depend on the probe
    assert all(p.grad is None for p in model.parameters()) and not model.training


def started(seen) -> ev.Started:
    return next(e for e in seen if isinstance(e, ev.Started))


def test_trainer_auto_on_a_cpu_without_bf16_trains_in_float32(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda flags=None: False)
    monkeypatch.setattr("minigpt_tui.core.training.trainer.probe_bf16", lambda *a: pytest.fail("probed"))
    seen = []
    trainer = Trainer(tiny_config(tiny_corpus, max_steps=2, precision="auto"), seen.append, runs_root=tmp_path)
    trainer.run()
    assert started(seen).dtype == "float32" and "no native bf16" in started(seen).precision_note
    meta = json.loads((trainer.run_dir / "meta.json").read_text())
    assert meta["precision"] == "float32" and "no native bf16" in meta["precision_note"]


def test_trainer_records_the_measured_choice_and_a_resumed_run_keeps_it(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda flags=None: True)
    monkeypatch.setattr("minigpt_tui.core.training.trainer.cpu_has_native_bf16", lambda flags=None: True)
    monkeypatch.setattr("minigpt_tui.core.training.trainer.probe_bf16", lambda *a: (0.04, 0.02))
    seen = []
    config = tiny_config(tiny_corpus, max_steps=4, eval_interval=2, precision="auto",
                         model={"n_embd": BF16_MIN_WIDTH})  # narrower models are not measured
    trainer = Trainer(config, seen.append, runs_root=tmp_path)
    trainer.run()
    assert started(seen).dtype == "bfloat16" and "2.00x" in started(seen).precision_note
    meta = RunDir(trainer.run_dir).read_meta()
    assert meta.precision == "bfloat16" and "2.00x" in meta.precision_note
    assert RunDir(trainer.run_dir).load("last").model.embed.weight.dtype == torch.float32  # master weights

    # Resumed, the run goes on in bf16 even where a new measurement would now say float32.
    monkeypatch.setattr("minigpt_tui.core.training.trainer.probe_bf16", lambda *a: pytest.fail("a resumed run is not probed"))
    config.train.max_steps = 6
    seen = []
    Trainer(config, seen.append, runs_root=tmp_path, resume_dir=trainer.run_dir).run()
    assert started(seen).dtype == "bfloat16" and "as this run was trained" in started(seen).precision_note


def test_a_bf16_run_resumes_exactly(tiny_corpus, tmp_path):
    """bf16 autocast on a CPU is deterministic, so a resumed bf16 run computes the losses of one never stopped."""
    config = tiny_config(tiny_corpus, max_steps=12, eval_interval=4, precision="bf16", model={"dropout": 0.1})
    full = []
    Trainer(config, full.append, runs_root=tmp_path / "full").run()

    stopped, again = stop_and_resume(config, tmp_path / "resumed", 6)
    assert stopped == 6
    losses = {e.step: e.loss for e in full if isinstance(e, ev.Step)}
    assert min(again) == 6 and all(loss == losses[step] for step, loss in again.items())
