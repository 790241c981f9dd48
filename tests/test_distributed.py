"""Two processes with torchrun (gloo on CPU) train exactly what one process with the same
global batch trains, and the checkpoint they write loads in a single process."""

import json
import os
import subprocess
import sys

import pytest
import torch

from minigpt_tui.core import checkpoint as ckpt
from minigpt_tui.core.sampling import Sampler

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

    runs = ckpt.list_runs()
    assert len(runs) == 2  # one run each: rank 1 wrote no folder of its own
    multi_run = json.loads(multi.stdout.splitlines()[0])["run_dir"]
    state = torch.load(ckpt.checkpoint_path(multi_run, "last"), weights_only=True)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state["model"])
    loaded = ckpt.load_run(multi_run, "last")
    text = "".join(e.text for e in Sampler(loaded.model, loaded.tokenizer).generate("the "))
    assert text
