"""benchmarks/decode_parts.py, which takes one sampled token apart, still runs against the sampler
and the decode it measures (it reaches into both: the sampler's loop, the decode plan's weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kit import tiny_config, train_tiny_run

ROOT = Path(__file__).resolve().parents[1]


def test_decode_parts_times_every_part_of_a_token(tiny_corpus, tmp_path):
    run = train_tiny_run(tiny_config(tiny_corpus, max_steps=2, eval_interval=2, sample_tokens=0), tmp_path / "runs")
    out = tmp_path / "parts.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "decode_parts.py"), "--run", str(run),
                           "--tokens", "40", "--rounds", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    parts = report["us_per_token"]
    assert {"generate", "in place: decode", "in place: pick", "decode alone", "pick alone"} <= set(parts)
    assert all(len(v) == 2 and all(t > 0 for t in v) for v in parts.values())
    assert report["machine"]["class"] and "µs per token" in done.stdout
    assert report["step"] in ("NativeStep", "SteadyStep")
