"""train.compile = "auto": a run compiles only where an earlier run of the same shape compiled (its
cache is still there), compiled steps were faster, and this run saves twice what a warm compile
takes; every run leaves its timings in the ledger, and the start line says what was chosen and why."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from minigpt_tui.core import native
from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.errors import ConfigError
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.training import compile_choice, trainer as trainer_module
from minigpt_tui.core.training.compile_choice import CompileChoice, CompileLedger, ShapeTimes, choose, shape_key
from minigpt_tui.core.training.time_budget import TimeBudget
from minigpt_tui.core.training.trainer import Trainer

from kit import tiny_config

CPU = torch.device("cpu")
# saves 6 ms a step; a warm compile took 3 s
PAYS = ShapeTimes(plain_step_s=0.040, compiled_step_s=0.034, compile_s=3.0, cold_compile_s=28.0)


@pytest.fixture(autouse=True)
def own_compile_cache(monkeypatch):
    """Whatever a test points inductor's cache at is put back afterwards, and no test sees a
    folder the person running the tests chose."""
    monkeypatch.setattr(compile_choice, "USER_CACHE_DIR", None)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "(put back after the test)")


@pytest.mark.parametrize("times, steps, on, words", [
    (None, 2000, False, "no compile cache for this shape yet"),
    (ShapeTimes(plain_step_s=0.04), 2000, False, "no compile cache for this shape yet"),
    (ShapeTimes(compiled_step_s=0.034, compile_s=3.0), 2000, False, "no uncompiled timing"),
    (ShapeTimes(plain_step_s=0.030, compiled_step_s=0.034, compile_s=3.0), 2000, False,
     "no faster here (34.0 ms against 30.0 ms)"),
    (PAYS, 400, False, "400 steps would save ~2 s, less than twice the last warm compile took 3 s"),
    (PAYS, 900, False, "900 steps would save ~5 s, less than twice"),  # earned back, but not with room
    (PAYS, 2000, True, "compiled: warm cache for this shape; 2,000 steps save ~12 s, and the last warm compile took 3 s"),
    # Only a cold compile measured yet: a warm one is taken as a quarter of it.
    (ShapeTimes(plain_step_s=0.040, compiled_step_s=0.034, cold_compile_s=28.0), 2000, False,
     "less than twice a warm compile estimated at 7 s (the cold one took 28 s)"),
    (ShapeTimes(plain_step_s=0.040, compiled_step_s=0.034, cold_compile_s=28.0), 3000, True, "save ~18 s"),
])
def test_auto_compiles_only_a_warm_shape_whose_compile_this_run_earns_back(times, steps, on, words):
    chosen, note = choose("auto", times, steps)
    assert chosen is on and words in note


def test_auto_does_not_count_on_a_cache_that_was_deleted():
    assert choose("auto", PAYS, 10**6, cache_there=False) == (
        False, "not compiled: no compile cache for this shape yet (train.compile = true makes one, where torch.compile works)")


def test_an_explicit_setting_is_obeyed_whatever_the_ledger_says():
    assert choose(True, None, 10) == (True, "compiled (train.compile = true)")
    assert choose(False, PAYS, 10**6) == (False, "")


def test_the_setting_takes_true_false_or_auto():
    config = RunConfig()
    assert config.train.compile == "auto"
    assert config.with_overrides(["train.compile=true"]).train.compile is True
    assert config.with_overrides(["train.compile=auto"]).train.compile == "auto"
    assert RunConfig.from_toml(config.to_toml()).train.compile == "auto"
    for bad in ("train.compile=sometimes", "train.compile=Auto", "train.compile=1"):
        with pytest.raises(ConfigError, match='train.compile must be true, false or "auto"'):
            config.with_overrides([bad])


def test_the_ledger_keeps_each_shapes_times_and_survives_a_broken_file(tmp_path):
    ledger = CompileLedger(tmp_path / "shapes.json")
    assert ledger.get("a") is None
    ledger.update("a", plain_step_s=0.04)
    ledger.update("a", compiled_step_s=0.03, cold_compile_s=25.0)  # the plain time stays
    ledger.update("b", plain_step_s=0.5)
    assert ledger.get("a") == ShapeTimes(0.04, 0.03, 0.0, 25.0) and ledger.get("b") == ShapeTimes(plain_step_s=0.5)
    (tmp_path / "shapes.json").write_text('{"a": {"plain_step_s": NaN, "compiled_step_s": -1, "compile_s": "x"}}',
                                          encoding="utf-8")
    assert ledger.get("a") == ShapeTimes()  # no time at all: NaN, negative and text are not times
    (tmp_path / "shapes.json").write_text("{not json", encoding="utf-8")
    assert ledger.get("a") is None  # a cache: broken means empty, and the next run writes it anew
    ledger.update("a", plain_step_s=0.04)
    assert ledger.get("a") == ShapeTimes(plain_step_s=0.04)


def test_a_shape_is_what_the_compiled_graphs_and_the_steps_time_depend_on(tiny_corpus):
    config = tiny_config(tiny_corpus)
    key = shape_key(config, CPU, torch.float32, 1)
    assert key == shape_key(tiny_config(tiny_corpus, max_steps=999, learning_rate=1e-2), CPU, torch.float32, 1)
    for other in (tiny_config(tiny_corpus, batch_size=4), tiny_config(tiny_corpus, grad_accum=2),
                  tiny_config(tiny_corpus, optimizer="muon"), tiny_config(tiny_corpus, model={"n_embd": 32})):
        assert shape_key(other, CPU, torch.float32, 1) != key
    assert key != shape_key(config, CPU, torch.bfloat16, 1)
    assert key != shape_key(config, CPU, torch.float32, 2)


def test_a_float32_cpu_shape_with_the_c_kernels_is_not_the_same_shape_without(tiny_corpus, monkeypatch):
    if not native.enabled():
        pytest.skip("the C kernels are not built here (no C compiler)")
    config = tiny_config(tiny_corpus)
    with_kernels, bf16 = shape_key(config, CPU, torch.float32, 1), shape_key(config, CPU, torch.bfloat16, 1)
    monkeypatch.setenv(native.ENV, "0")
    assert shape_key(config, CPU, torch.float32, 1) != with_kernels
    assert shape_key(config, CPU, torch.bfloat16, 1) == bf16  # bf16 steps never use them
    gru = tiny_config(tiny_corpus, model={"family": "gru"})
    without = shape_key(gru, CPU, torch.float32, 1)
    monkeypatch.delenv(native.ENV)
    assert shape_key(gru, CPU, torch.float32, 1) == without  # nor do other families' steps


def test_a_compiled_run_keeps_its_cache_in_minigpt_tuis_cache_folder_even_after_dynamo_set_its_own():
    """torch._dynamo, once imported (DDP and some optimizers import it), writes inductor's default
    folder into the environment: a compiled run still points it at ours."""
    script = ("import os, torch, torch._dynamo\n"
              "assert os.environ['TORCHINDUCTOR_CACHE_DIR'].endswith('torchinductor_' + __import__('getpass').getuser())\n"
              "from minigpt_tui.core.training import compile_choice\n"
              "from minigpt_tui.core.config import RunConfig\n"
              "config = RunConfig().with_overrides(['train.compile=true'])\n"
              "compile_choice.CompileChoice(config, torch.device('cpu'), torch.float32, steps=20)\n"
              "print(os.environ['TORCHINDUCTOR_CACHE_DIR'])\n")
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(compile_choice.compile_folder() / "inductor")


def test_a_folder_the_user_chose_for_the_cache_wins(monkeypatch, tmp_path):
    monkeypatch.setattr(compile_choice, "USER_CACHE_DIR", str(tmp_path / "mine"))
    CompileChoice(RunConfig().with_overrides(["train.compile=true"]), CPU, torch.float32, steps=20)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


class OneOfTwoRanks:
    """A Distributed under torchrun, as CompileChoice sees it: rank 1, whose broadcast hands back
    rank 0's decision."""
    enabled, is_main, world_size = True, False, 2

    def __init__(self, rank0: tuple[bool, str]):
        self.rank0 = rank0

    def broadcast(self, value):
        return self.rank0


def test_every_rank_runs_rank_0s_decision_and_only_rank_0_writes_the_ledger(tiny_corpus, tmp_path):
    ledger = CompileLedger(tmp_path / "shapes.json")
    config = tiny_config(tiny_corpus, compile=True)  # rank 1 alone would compile
    choice = CompileChoice(config, CPU, torch.float32, steps=20, dist=OneOfTwoRanks((False, "rank 0's words")),
                           ledger=ledger)
    assert (choice.on, choice.note) == (False, "rank 0's words")
    for _ in range(5):
        choice.stretch(10, 1.0)
    choice.finish()
    assert not (tmp_path / "shapes.json").exists()


def test_a_run_writes_its_times_once_it_has_timed_enough_steps_however_slow_they_are(tiny_corpus, tmp_path):
    """Slow steps (seconds each) count as well as fast ones: what is timed is the whole run after
    its first stretch, not a recent window."""
    ledger = CompileLedger(tmp_path / "shapes.json")
    config = tiny_config(tiny_corpus)
    key = shape_key(config, CPU, torch.float32, 1)
    choice = CompileChoice(config, CPU, torch.float32, steps=40, ledger=ledger)
    choice.stretch(1, 9.0)  # the first step (and a compile, were there one)
    choice.stretch(10, 30.0)
    choice.finish()
    assert ledger.get(key) is None  # 10 steps timed: too few
    choice.stretch(10, 30.0)
    choice.finish()
    assert ledger.get(key) == ShapeTimes(plain_step_s=3.0)


def test_a_compile_is_recorded_as_cold_first_and_as_warm_once_the_cache_is_there(tiny_corpus, tmp_path):
    ledger = CompileLedger(tmp_path / "shapes.json")
    config = tiny_config(tiny_corpus, compile=True)
    key = shape_key(config, CPU, torch.float32, 1)

    def compiled_run(first_s: float):
        choice = CompileChoice(config, CPU, torch.float32, steps=40, ledger=ledger)
        for steps, seconds in ((1, first_s), (10, 0.5), (10, 0.5)):
            choice.stretch(steps, seconds)
        choice.finish()

    compiled_run(first_s=25.05)  # 0.05 s a step: the compile took 25 s
    assert ledger.get(key) == ShapeTimes(compiled_step_s=0.05, cold_compile_s=25.0)
    (compile_choice.inductor_folder() / "graph").mkdir(parents=True)  # what that compile left behind
    compiled_run(first_s=3.05)
    assert ledger.get(key) == ShapeTimes(compiled_step_s=0.05, compile_s=3.0, cold_compile_s=25.0)


def test_a_time_budget_run_weighs_the_steps_left_in_its_budget(tiny_corpus, tmp_path):
    ledger = CompileLedger(tmp_path / "shapes.json")
    config = tiny_config(tiny_corpus, time_budget="10m")
    ledger.update(shape_key(config, CPU, torch.float32, 1), **dataclasses.asdict(PAYS))
    (compile_choice.inductor_folder() / "graph").mkdir(parents=True)
    choice = CompileChoice(config, CPU, torch.float32, steps=5, budget=TimeBudget(600.0), ledger=ledger)
    assert choice.on and "15,000 steps save ~90 s" in choice.note  # 600 s of 40 ms steps, not max_steps' 5
    resumed = CompileChoice(config, CPU, torch.float32, steps=5, ledger=ledger,
                            budget=TimeBudget(600.0, used_s=570.0))  # 30 s left: 750 steps
    assert not resumed.on and "750 steps would save ~4 s" in resumed.note


def test_runs_fill_the_ledger_and_auto_then_compiles_a_run_that_pays(tiny_corpus, tmp_path, monkeypatch):
    """An uncompiled run records its step time, a compiled one (torch.compile stood in for here: a
    real compile takes tens of seconds) its step time and its compile; a later "auto" run of that
    shape stays plain where compiling does not pay, compiles where it does, and says so."""
    compiled = []
    monkeypatch.setattr(trainer_module.torch, "compile", lambda model: compiled.append(model) or model)

    def run(**train) -> tuple[Trainer, ev.Started]:
        seen = []
        trainer = Trainer(tiny_config(tiny_corpus, max_steps=40, eval_interval=40, threads=1, **train), seen.append,
                          recipe_name="tiny", runs_root=tmp_path / "runs")
        trainer.run()
        (started,) = [e for e in seen if isinstance(e, ev.Started)]
        return trainer, started

    first, started = run()  # "auto" with an empty ledger: plain, and it times its steps
    assert not compiled and not started.compiled and "no compile cache for this shape yet" in started.compile_note
    key = first.compiling.key
    times = CompileLedger().get(key)
    assert times.plain_step_s > 0 and times.compiled_step_s == times.compile_s == times.cold_compile_s == 0

    second, started = run(compile=True)
    assert len(compiled) == 1 and started.compiled and started.compile_note == "compiled (train.compile = true)"
    times = CompileLedger().get(key)
    assert times.compiled_step_s > 0 and times.plain_step_s > 0 and times.compile_s == 0  # a first compile: cold
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(compile_choice.compile_folder() / "inductor")
    (compile_choice.inductor_folder() / "graph").mkdir()  # what a real compile leaves there

    # Where compiled steps were no faster (as this stand-in's may be), "auto" stays plain and says why.
    CompileLedger().update(key, plain_step_s=0.5, compiled_step_s=0.6, compile_s=3.0)
    third, started = run()
    assert len(compiled) == 1 and not third.compiling.on and "no faster here" in started.compile_note
    # Where they were faster and the run is long enough to earn the compile back, it compiles.
    CompileLedger().update(key, plain_step_s=1.0, compiled_step_s=0.5, compile_s=3.0)
    fourth, started = run()
    assert len(compiled) == 2 and started.compiled and started.compile_note.startswith("compiled: warm cache")
    ledger = json.loads((compile_choice.compile_folder() / "shapes.json").read_text(encoding="utf-8"))
    assert list(ledger) == [key]  # one shape, one entry


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


def test_the_train_tab_says_compiling_until_a_compiled_runs_first_step_is_out():
    from minigpt_tui.tui.train.state import RunState, render_status

    class NoTheme:  # (the status's colours fall back to their defaults)
        theme_variables: dict = {}

    def status(state: RunState) -> str:
        return render_status(state, NoTheme()).plain

    started = ev.Started(run_name="r", run_dir="/r", family="transformer", tokenizer="char", corpus="c", vocab_size=10,
                         ln_vocab=2.3, params=100, start_step=0, max_steps=10, tokens_per_step=64, device="cpu",
                         dtype="float32", compiled=True, compile_note="compiled (train.compile = true)")
    state = RunState(status="starting")
    state.apply(started)
    assert "compiling…" in status(state) and "cpu, compiled" in status(state)
    state.apply(ev.Step(step=0, loss=2.3, lr=1e-3, tokens_per_s=1000.0, elapsed_s=5.0, eta_s=9.0, max_steps=10))
    assert "compiling…" not in status(state) and "1,000 tok/s" in status(state)
    plain = RunState(status="starting")
    plain.apply(dataclasses.replace(started, compiled=False))
    assert "- tok/s" in status(plain) and "compil" not in status(plain)
