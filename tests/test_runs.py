"""core/runs/run_dir.py: the run folder's meta survives what a resume or a newer version does to it."""

from __future__ import annotations

import errno
import json

import pytest

from minigpt_tui.core.errors import TrainingError
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.runs.run_meta import RunMeta
from minigpt_tui.core.training.trainer import Trainer

from kit import tiny_config, train_tiny_run


def test_a_resume_that_fails_early_records_the_failure_in_the_real_meta(tiny_corpus, tmp_path, monkeypatch):
    run = RunDir(train_tiny_run(tiny_config(tiny_corpus, max_steps=10), tmp_path / "runs"))
    before = run.read_meta()

    def full_disk(self, last_step):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "metrics.jsonl"))

    monkeypatch.setattr(RunDir, "truncate_metrics", full_disk)
    trainer = Trainer(tiny_config(tiny_corpus, max_steps=20), lambda e: None, resume_dir=run.path)
    with pytest.raises(TrainingError) as err:
        trainer.run()
    trainer.fail(str(err.value))
    after = run.read_meta()
    assert (after.name, after.family, after.step, after.created) == (before.name, before.family, 10, before.created)
    assert after.status == "failed" and "No space left" in after.error


def test_a_resumed_run_forgets_an_earlier_failure(tiny_corpus, tmp_path):
    run = RunDir(train_tiny_run(tiny_config(tiny_corpus, max_steps=10), tmp_path / "runs"))
    meta = run.read_meta()
    meta.status, meta.error = "failed", "The loss became nan at step 9."
    run.write_meta(meta)
    Trainer(tiny_config(tiny_corpus, max_steps=20), lambda e: None, resume_dir=run.path).run()
    assert (run.read_meta().status, run.read_meta().error) == ("finished", "")


def test_keys_of_a_newer_version_survive_a_rewrite(tmp_path):
    raw = {"name": "r", "step": 3, "best_val_loss": None, "from_the_future": {"x": [1, 2]}}
    meta = RunMeta.from_dict(raw, tmp_path / "meta.json")
    meta.step = 4
    written = json.loads(meta.to_json())
    assert written["from_the_future"] == {"x": [1, 2]} and written["step"] == 4 and "extra" not in written
