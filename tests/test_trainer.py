import json
import math

import pytest
import torch

from minigpt_tui.core.generation.sampling import Sampler
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir, list_runs
from minigpt_tui.core.training.trainer import Trainer, lr_at

from kit import tiny_config


def train(config, tmp_path, **kw):
    seen = []
    trainer = Trainer(config, seen.append, recipe_name="tiny", runs_root=tmp_path / "runs", **kw)
    done = trainer.run()
    return trainer, done, seen


def test_a_tiny_run_trains_logs_and_writes_its_folder(tiny_corpus, tmp_path):
    trainer, done, seen = train(tiny_config(tiny_corpus, max_steps=30, learning_rate=1e-2), tmp_path)
    started = seen[0]
    assert isinstance(started, ev.Started) and started.max_steps == 30
    steps = [e for e in seen if isinstance(e, ev.Step)]
    assert steps[0].step == 0 and abs(steps[0].loss - started.ln_vocab) < 0.3  # step 0 is the untrained model
    assert steps[-1].loss < steps[0].loss - 0.5
    evals = [e for e in seen if isinstance(e, ev.Eval)]
    assert [e.step for e in evals] == [0, 10, 20, 30]
    assert any(isinstance(e, ev.Sample) and e.text for e in seen)
    assert done.reason == "finished" and done.step == 30
    run = trainer.run_dir
    for name in ("config.toml", "tokenizer.json", "meta.json", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    metrics = RunDir(run).read_metrics()
    assert [r["step"] for r in metrics if "val_loss" in r] == [0, 10, 20, 30]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["step"] == 30 and meta["status"] == "finished" and meta["best_val_loss"] == min(e.val_loss for e in evals)
    # every event survives the JSON-lines codec (compared encoded: an unknown ETA is NaN, and NaN != NaN)
    assert all(ev.encode(ev.decode(ev.encode(e))) == ev.encode(e) for e in seen)
    assert math.isnan(steps[0].eta_s)  # no ETA before the warm-up steps are past (issue 13, defect 2)


def test_saved_model_gives_identical_logits_after_reload(tiny_corpus, tmp_path):
    trainer, _, _ = train(tiny_config(tiny_corpus), tmp_path)
    loaded = RunDir(trainer.run_dir).load(checkpoint="last")
    x = torch.randint(trainer.tokenizer.vocab_size, (2, 16))
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(trainer.model(x)[0], loaded.model(x)[0])
    text = "".join(e.text for e in Sampler(loaded.model, loaded.tokenizer).generate("the "))
    assert text


def test_every_family_starts_near_ln_v_and_learns(tiny_corpus, tmp_path):
    for family in ("gru", "lstm", "cnn"):
        trainer, _, seen = train(tiny_config(tiny_corpus, family=family, max_steps=25), tmp_path)
        steps = [e for e in seen if isinstance(e, ev.Step)]
        assert abs(steps[0].loss - seen[0].ln_vocab) < 0.3
        assert steps[-1].loss < steps[0].loss
        # the receptive field: in the start event and the run's meta (0: an RNN's is unbounded)
        expected = trainer.model.receptive_field or 0
        assert seen[0].receptive_field == RunDir(trainer.run_dir).read_meta().receptive_field == expected
        assert (expected > 0) == (family == "cnn")


@pytest.mark.parametrize("family, optimizer", [("transformer", "adamw"), ("cnn", "adamw"), ("transformer", "muon")])
def test_resumed_run_continues_exactly(tiny_corpus, tmp_path, family, optimizer):
    config = tiny_config(tiny_corpus, family, max_steps=20)
    config.train.optimizer = optimizer  # (Muon: its momentum buffers are saved and restored too)
    config.model.dropout = 0.1  # the RNG must be restored too
    _, _, full = train(config, tmp_path)

    stopper = {}

    def stop_at_12(e):
        if isinstance(e, ev.Step) and e.step == 11:
            stopper["t"].stop_requested = True

    t = Trainer(config, stop_at_12, recipe_name="tiny", runs_root=tmp_path / "runs")
    stopper["t"] = t
    done = t.run()
    assert done.reason == "stopped" and done.step == 12
    _, _, resumed = train(config, tmp_path, resume_dir=t.run_dir)
    full_losses = {e.step: e.loss for e in full if isinstance(e, ev.Step)}
    resumed_losses = {e.step: e.loss for e in resumed if isinstance(e, ev.Step)}
    assert min(resumed_losses) == 12
    for step, loss in resumed_losses.items():
        assert loss == full_losses[step], step
    steps_logged = [r["step"] for r in RunDir(t.run_dir).read_metrics() if "loss" in r]
    assert steps_logged == sorted(set(steps_logged)) == list(range(20))


def test_a_run_stopped_before_its_first_evaluation_reports_no_best_loss(tiny_corpus, tmp_path):
    """The step-0 evaluation measures the untrained model: it is no "best" result."""
    def stop_at_3(e):
        if isinstance(e, ev.Step) and e.step == 2:
            t.stop_requested = True

    seen = []
    t = Trainer(tiny_config(tiny_corpus, max_steps=20), lambda e: (seen.append(e), stop_at_3(e)),
                recipe_name="tiny", runs_root=tmp_path / "runs")
    done = t.run()
    assert done.reason == "stopped" and done.step == 3 and done.best_val_loss is None
    (first_eval,) = [e for e in seen if isinstance(e, ev.Eval)]
    assert first_eval.step == 0 and first_eval.best_val_loss is None
    assert RunDir(t.run_dir).read_meta().best_val_loss is None
    assert not RunDir(t.run_dir).checkpoint_path("best").exists()


def test_schedule_warms_up_then_decays_to_min_lr():
    from minigpt_tui.core.config import TrainConfig

    cfg = TrainConfig(max_steps=100, warmup_steps=10, learning_rate=1e-3, min_lr=1e-4)
    assert math.isclose(lr_at(0, cfg), 1e-4)
    assert math.isclose(lr_at(9, cfg), 1e-3)
    assert lr_at(50, cfg) < lr_at(20, cfg)
    assert math.isclose(lr_at(100, cfg), 1e-4)


def test_listing_reads_metadata_only(tiny_corpus, tmp_path):
    trainer, _, _ = train(tiny_config(tiny_corpus), tmp_path)
    (trainer.run_dir / "checkpoints" / "last.pt").write_bytes(b"garbage")  # weights are not read
    infos = list_runs(tmp_path / "runs")
    assert len(infos) == 1 and infos[0].error == "" and infos[0].step == 20 and infos[0].family == "transformer"


def test_the_first_steps_loss_comes_before_the_untrained_models_evaluation_of_the_same_weights(tiny_corpus, tmp_path):
    # (core/training/first_evaluation.py: the step-0 evaluation runs after step 0's loss is out,
    # on a copy of the weights the run started from)
    from minigpt_tui.core.models import build_model

    config = tiny_config(tiny_corpus, max_steps=12)
    trainer, done, seen = train(config, tmp_path)
    kinds = [(type(e).__name__, getattr(e, "step", None)) for e in seen]
    assert kinds.index(("Step", 0)) < kinds.index(("Eval", 0)) < kinds.index(("Step", 1))
    first = next(e for e in seen if isinstance(e, ev.Eval) and e.step == 0)
    torch.manual_seed(config.train.seed)  # the trainer's model, as it was built
    start = build_model(config.model, trainer.tokenizer.vocab_size)
    trainer.model.load_state_dict(start.state_dict())
    assert trainer._mean_loss(trainer.val_batches) == first.val_loss
    assert abs(first.val_loss - seen[0].ln_vocab) < 0.3
    records = RunDir(trainer.run_dir).read_metrics()
    assert [r["step"] for r in records if "val_loss" in r] == [0, 10, 12]
