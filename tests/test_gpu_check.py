"""benchmarks/gpu_check.py, which a session lent a GPU runs in its few minutes of device time, still
runs against the models, the optimizer and the sampler it drives: its --dry-run on the CPU (tiny
shapes; the trainer part is left out here, its bf16 steps being emulated and slow on many CPUs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_its_comparison_and_sampling_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run",
                           "--only", "compare,sample", "--out", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report["compare"]) == set(report["sample"]) == {"shakespeare-char", "gpt2-small"}
    for (row,) in report["compare"].values():  # one row a shape: no compile in a dry run
        assert row["ours_ms"] > 0 and row["baseline_ms"] > 0 and row["ratio"] > 0
        assert row["params"]["minigpt-tui"] > 0 and set(row["final_loss"]) == {"minigpt-tui", "baseline"}
    for row in report["sample"].values():
        assert row["cache_equals_recompute"] and row["tokens_per_s"]["cached"] > 0
    assert report["machine"]["class"].startswith("CPU") and "side by side" in done.stdout
