"""Two processes with torchrun (gloo on CPU) train exactly what one process with the same
global batch trains, and the checkpoint they write loads in a single process."""

import json
import os
import subprocess
import sys

import pytest
import torch

from minigpt_tui.core.generation.sampling import Sampler
from minigpt_tui.core.runs.run_dir import RunDir, list_runs

COMMON = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
          "--set", "model.context_length=16", "--set", "train.max_steps=12", "--set", "train.eval_interval=6",
          "--set", "train.eval_batches=4", "--set", "train.log_interval=1", "--set", "train.sample_tokens=8",
          "--set", "train.threads=1", "--set", "train.device=cpu", "--set", "train.grad_accum=2",
          "--events", "jsonl"]


def losses(stdout: str) -> dict[int, float]:
    events = [json.loads(line) for line in stdout.splitlines()]
    return {e["step"]: e["loss"] for e in events if e["type"] == "step"}


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tiny_corpus, data_home):
    env = {**os.environ, "MINIGPT_TUI_HOME": str(data_home), "OMP_NUM_THREADS": "1"}
    data = ["--set", f"data.path={tiny_corpus}"]
    single = subprocess.run([sys.executable, "-m", "minigpt_tui", "--train", *COMMON, *data,
                             "--set", "train.batch_size=8"], capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "minigpt_tui", "--train", *COMMON, *data, "--set", "train.batch_size=4"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]

    one, two = losses(single.stdout), losses(multi.stdout)
    assert sorted(one) == sorted(two) == list(range(12))  # only rank 0 printed events
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=2e-3), step

    runs = list_runs()
    assert len(runs) == 2  # one run each: rank 1 wrote no folder of its own
    multi_run = json.loads(multi.stdout.splitlines()[0])["run_dir"]
    state = torch.load(RunDir(multi_run).checkpoint_path("last"), weights_only=True)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state["model"])
    loaded = RunDir(multi_run).load("last")
    text = "".join(e.text for e in Sampler(loaded.model, loaded.tokenizer).generate("the "))
    assert text

    # ...and the other way round: a single-process run resumes under torchrun.
    single_run = json.loads(single.stdout.splitlines()[0])["run_dir"]
    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "minigpt_tui", "--train", "--resume", single_run, "--set", "train.max_steps=14",
                              "--set", "train.batch_size=4", "--events", "jsonl"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(losses(resumed.stdout)) == [12, 13]


def test_saved_keys_carry_no_compile_or_ddp_prefix():
    from minigpt_tui.core.config import ModelConfig
    from minigpt_tui.core.models import build_model, unwrap

    model = build_model(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=8), 20)
    compiled = torch.compile(model)  # wrapping only; nothing is compiled until it runs
    assert any(k.startswith("_orig_mod.") for k in compiled.state_dict())
    assert unwrap(compiled) is model
    assert list(unwrap(compiled).state_dict()) == list(model.state_dict())


def test_bf16_autocast_trains_and_is_recorded(tiny_corpus, tmp_path):
    from minigpt_tui.core.training.trainer import Trainer

    from kit import tiny_config

    seen = []
    trainer = Trainer(tiny_config(tiny_corpus, max_steps=6, precision="bf16"), seen.append, runs_root=tmp_path)
    trainer.run()
    assert seen[0].dtype == "bfloat16"
    assert json.loads((trainer.run_dir / "meta.json").read_text())["precision"] == "bfloat16"
    assert RunDir(trainer.run_dir).load("last").model(torch.zeros(1, 4, dtype=torch.long))[0].dtype == torch.float32
