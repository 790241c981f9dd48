"""train.compile = "auto": a run compiles only where an earlier run of the same shape compiled (its
cache is warm), compiled steps were faster, and this run saves more than the last compile took;
every run leaves its timings in the ledger, and the start line says what was chosen and why."""

from __future__ import annotations

import json
import os

import pytest
import torch

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.errors import ConfigError
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.training import compile_choice, trainer as trainer_module
from minigpt_tui.core.training.compile_choice import CompileChoice, CompileLedger, ShapeTimes, choose, shape_key
from minigpt_tui.core.training.time_budget import TimeBudget
from minigpt_tui.core.training.trainer import Trainer

from kit import tiny_config

PAYS = ShapeTimes(plain_step_s=0.040, compiled_step_s=0.034, compile_s=3.0)  # saves 6 ms a step, 3 s to compile


@pytest.mark.parametrize("times, steps, on, words", [
    (None, 2000, False, "no compile cache for this shape yet"),
    (ShapeTimes(plain_step_s=0.04), 2000, False, "no compile cache for this shape yet"),
    (ShapeTimes(compiled_step_s=0.034, compile_s=3.0), 2000, False, "no uncompiled timing"),
    (ShapeTimes(plain_step_s=0.030, compiled_step_s=0.034, compile_s=3.0), 2000, False, "no faster here (34.0 ms against 30.0 ms)"),
    (PAYS, 400, False, "400 steps would save ~2 s, less than twice what the last compile took (3 s)"),
    (PAYS, 900, False, "900 steps would save ~5 s, less than twice"),  # earned back, but not with room
    (PAYS, 2000, True, "warm cache for this shape; the last compile took 3 s and 2,000 steps save ~12 s"),
])
def test_auto_compiles_only_a_warm_shape_whose_compile_this_run_earns_back(times, steps, on, words):
    chosen, note = choose("auto", times, steps)
    assert chosen is on and words in note


def test_an_explicit_setting_is_obeyed_whatever_the_ledger_says():
    assert choose(True, None, 10) == (True, "compiled (train.compile = true)")
    assert choose(False, PAYS, 10**6) == (False, "")


def test_the_setting_takes_true_false_or_auto():
    config = RunConfig()
    assert config.train.compile == "auto"
    assert config.with_overrides(["train.compile=true"]).train.compile is True
    assert config.with_overrides(["train.compile=auto"]).train.compile == "auto"
    for bad in ("train.compile=sometimes", "train.compile=1"):
        with pytest.raises(ConfigError, match='train.compile must be true, false or "auto"'):
            config.with_overrides([bad])


def test_the_ledger_keeps_each_shapes_times_and_survives_a_broken_file(tmp_path):
    ledger = CompileLedger(tmp_path / "shapes.json")
    assert ledger.get("a") is None
    ledger.update("a", plain_step_s=0.04)
    ledger.update("a", compiled_step_s=0.03, compile_s=2.5)  # the plain time stays
    ledger.update("b", plain_step_s=0.5)
    assert ledger.get("a") == ShapeTimes(0.04, 0.03, 2.5) and ledger.get("b") == ShapeTimes(plain_step_s=0.5)
    (tmp_path / "shapes.json").write_text("{not json", encoding="utf-8")
    assert ledger.get("a") is None  # a cache: broken means empty, and the next run writes it anew
    ledger.update("a", plain_step_s=0.04)
    assert ledger.get("a") == ShapeTimes(plain_step_s=0.04)


def test_a_shape_is_what_the_compiled_graphs_depend_on(tiny_corpus):
    config = tiny_config(tiny_corpus)
    cpu, key = torch.device("cpu"), shape_key(config, torch.device("cpu"), torch.float32, 1)
    assert key == shape_key(tiny_config(tiny_corpus, max_steps=999, learning_rate=1e-2), cpu, torch.float32, 1)
    assert key != shape_key(tiny_config(tiny_corpus, batch_size=4), cpu, torch.float32, 1)
    assert key != shape_key(tiny_config(tiny_corpus, model={"n_embd": 32}), cpu, torch.float32, 1)
    assert key != shape_key(config, cpu, torch.bfloat16, 1)
    assert key != shape_key(config, cpu, torch.float32, 2)


def test_compiled_runs_keep_their_cache_in_minigpt_tuis_cache_folder(tiny_corpus, monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    config = tiny_config(tiny_corpus, compile=True)
    CompileChoice(config, torch.device("cpu"), torch.float32, steps=20)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(compile_choice.compile_folder() / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's own choice wins
    CompileChoice(config, torch.device("cpu"), torch.float32, steps=20)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_runs_fill_the_ledger_and_auto_then_compiles_a_run_that_pays(tiny_corpus, tmp_path, monkeypatch):
    """An uncompiled run records its step time, a compiled one (torch.compile stood in for here: a
    real compile takes tens of seconds) its step time and what its first steps took beyond that;
    a later "auto" run of that shape compiles when that pays, and says so when it starts."""
    compiled = []
    monkeypatch.setattr(trainer_module.torch, "compile", lambda model: compiled.append(model) or model)

    def run(**train) -> tuple[Trainer, list]:
        seen = []
        trainer = Trainer(tiny_config(tiny_corpus, max_steps=40, eval_interval=40, threads=1, **train), seen.append,
                          recipe_name="tiny", runs_root=tmp_path / "runs")
        trainer.run()
        return trainer, [e for e in seen if isinstance(e, ev.Started)]

    first, (started,) = run()  # "auto" with an empty ledger: plain, and it times its steps
    assert not compiled and "no compile cache for this shape yet" in started.compile_note
    times = CompileLedger().get(first.compiling.key)
    assert times.plain_step_s > 0 and times.compiled_step_s == 0

    second, (started,) = run(compile=True)
    assert len(compiled) == 1 and started.compile_note == "compiled (train.compile = true)"
    times = CompileLedger().get(first.compiling.key)
    assert times.compiled_step_s > 0 and times.compile_s >= 0 and times.plain_step_s > 0

    # Where compiled steps were no faster (as this stand-in's may be), "auto" stays plain and says why.
    CompileLedger().update(first.compiling.key, plain_step_s=0.5, compiled_step_s=0.6, compile_s=3.0)
    third, (started,) = run()
    assert len(compiled) == 1 and not third.compiling.on and "no faster here" in started.compile_note
    # Where compiled steps were faster and the run is long enough to earn the compile back, it compiles.
    CompileLedger().update(first.compiling.key, plain_step_s=1.0, compiled_step_s=0.5, compile_s=3.0)
    fourth, (started,) = run()
    assert len(compiled) == 2 and fourth.compiling.on and started.compile_note.startswith("compiled: warm cache")
    ledger = json.loads((compile_choice.compile_folder() / "shapes.json").read_text(encoding="utf-8"))
    assert list(ledger) == [first.compiling.key]  # one shape, one entry


def test_the_start_line_says_whether_the_run_is_compiled(capsys):
    from minigpt_tui.cli.train import ProgressPrinter

    def start_line(note: str) -> str:
        ProgressPrinter()(ev.Started(run_name="r", run_dir="/r", family="transformer", tokenizer="char", corpus="c",
                                     vocab_size=10, ln_vocab=2.3, params=100, start_step=0, max_steps=10,
                                     tokens_per_step=64, device="cpu", dtype="float32", compile_note=note))
        out = capsys.readouterr()
        return out.out + out.err

    assert "torch.compile: not compiled: no compile cache for this shape yet" in start_line(
        "not compiled: no compile cache for this shape yet")
    assert "torch.compile" not in start_line("")


def test_a_time_budget_run_weighs_the_steps_its_budget_allows(tiny_corpus, tmp_path):
    ledger = CompileLedger(tmp_path / "shapes.json")
    config = tiny_config(tiny_corpus, time_budget="10m")
    key = shape_key(config, torch.device("cpu"), torch.float32, 1)
    ledger.update(key, plain_step_s=PAYS.plain_step_s, compiled_step_s=PAYS.compiled_step_s, compile_s=PAYS.compile_s)
    choice = CompileChoice(config, torch.device("cpu"), torch.float32, steps=5, budget=TimeBudget(600.0), ledger=ledger)
    assert choice.on and "15,000 steps save ~90 s" in choice.note  # 600 s of 40 ms steps, not max_steps' 5
    resumed = CompileChoice(config, torch.device("cpu"), torch.float32, steps=5, ledger=ledger,
                            budget=TimeBudget(600.0, used_s=570.0))  # 30 s left: 750 steps
    assert not resumed.on and "750 steps would save ~4 s" in resumed.note


def test_only_a_recording_process_with_enough_timed_steps_writes_the_ledger(tiny_corpus, tmp_path):
    from minigpt_tui.core.training.eta import EtaEstimator

    ledger = CompileLedger(tmp_path / "shapes.json")
    config = tiny_config(tiny_corpus)
    eta = EtaEstimator(skip_steps=0)
    eta.add(10, 1.0)  # the first stretch is never timed (it holds the first step)
    eta.add(10, 0.5)
    CompileChoice(config, torch.device("cpu"), torch.float32, steps=20, ledger=ledger).finish(eta)
    assert ledger.get(shape_key(config, torch.device("cpu"), torch.float32, 1)) is None  # 10 timed steps: too few
    eta.add(10, 0.5)
    CompileChoice(config, torch.device("cpu"), torch.float32, steps=20, ledger=ledger, records=False).finish(eta)
    assert ledger.get(shape_key(config, torch.device("cpu"), torch.float32, 1)) is None  # not rank 0
    CompileChoice(config, torch.device("cpu"), torch.float32, steps=20, ledger=ledger).finish(eta)
    assert ledger.get(shape_key(config, torch.device("cpu"), torch.float32, 1)) == ShapeTimes(plain_step_s=0.05)
