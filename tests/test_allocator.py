"""Training on a CPU keeps its freed memory: no page faults for the same activations every step."""

import json
import subprocess
import sys

import pytest

from minigpt_tui.core.training.allocator import is_glibc, keep_freed_memory

# Training steps at the shakespeare-char-transformer shape in a fresh interpreter (the allocator's
# state is per process), with or without keep_freed_memory(); prints page faults per step.
STEPS = """
import json, resource, sys, torch
from minigpt_tui.core.training.allocator import keep_freed_memory
from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models import build_model
if sys.argv[1] == "kept":
    assert keep_freed_memory()
torch.set_num_threads(2)
torch.manual_seed(0)
model = build_model(ModelConfig(n_layer=4, n_head=4, n_embd=128, context_length=64), 65)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
def step():
    x = torch.randint(0, 65, (12, 65))
    logits = model(x[:, :-1])[0]
    torch.nn.functional.cross_entropy(logits.reshape(-1, 65), x[:, 1:].reshape(-1)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
for _ in range(10):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10))
"""


def faults_per_step(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not is_glibc(), reason="only glibc's malloc has these thresholds")
def test_steps_fault_no_pages_in_once_the_freed_memory_is_kept():
    default, kept = faults_per_step("default"), faults_per_step("kept")
    if default < 100:
        pytest.skip(f"this C library's defaults already keep the memory ({default:.0f} page faults a step)")
    # (kept: 0 to ~50 a step, as the heap still finds its size; default: ~1,000 to 2,800 here)
    assert kept < default / 10, (default, kept)


def test_keep_freed_memory_says_whether_it_could():
    assert keep_freed_memory() is is_glibc()
