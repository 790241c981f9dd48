"""Training on a CPU keeps its freed memory: no page faults for the same activations every step."""

import json
import statistics
import subprocess
import sys

import pytest

from minigpt_tui.core.training.allocator import is_glibc, keep_freed_memory

# Training steps at the shakespeare-char-transformer shape in a fresh interpreter (the allocator's
# state is per process), with or without keep_freed_memory(); prints the page faults of each step.
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
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def faults_per_step(mode: str) -> float:
    """The median step's page faults: a step that grows the heap once is not the steady state."""
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return statistics.median(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(not is_glibc(), reason="only glibc's malloc has these thresholds")
def test_steps_fault_no_pages_in_once_the_freed_memory_is_kept():
    default, kept = faults_per_step("default"), faults_per_step("kept")
    if default < 100:
        pytest.skip(f"this C library's defaults already keep the memory ({default:.0f} page faults a step)")
    # (kept: 0 a step but for the odd step that grows the heap; default: ~250 to 2,800 here, fewer
    # since training's attention and GELU run in C and allocate less)
    assert kept < default / 10, (default, kept)


def test_keep_freed_memory_says_whether_it_could():
    assert keep_freed_memory() is is_glibc()
