"""The training loop. It reports progress as events (core/runs/events.py) to one callback.

Step numbering: `step` counts optimizer updates done. The loss logged at step s
is measured on the batch of step s with the parameters after s updates, so step
0 is the untrained model (its loss should be close to ln V). Evaluations and
checkpoints happen at steps that are multiples of train.eval_interval and at
the end.

Resuming restores the model, the optimizer, the step (which fixes both the
learning-rate schedule and the data position, see core/data/batching.py) and the global
RNG (dropout), so a resumed run computes the same losses as one never stopped.

Data: the corpus is never read whole; training_data.py sets it up (the token cache, the
Preparing events of a first start).

Distributed: when started by torchrun (WORLD_SIZE > 1) the model is wrapped in
DistributedDataParallel, each rank draws its own batches, evaluation losses are
averaged over ranks and only rank 0 writes files or emits events.
"""

from __future__ import annotations

import gc
import math
import time
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.data.batching import TokenStream
from minigpt_tui.core.errors import CheckpointError, RunError, TrainingError
from minigpt_tui.core.formatting import parse_duration
from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings
from minigpt_tui.core.models import LanguageModel, build_model, count_parameters, unwrap
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.checkpoint import load_checkpoint, save_checkpoint
from minigpt_tui.core.runs.run_dir import CONFIG_NAME, META_NAME, TOKENIZER_NAME, RunDir
from minigpt_tui.core.runs.run_meta import RunMeta
from minigpt_tui.core.runs.run_names import corpus_slug, recipe_corpus, run_stem
from minigpt_tui.core.training.allocator import keep_freed_memory
from minigpt_tui.core.training.compile_choice import CompileChoice
from minigpt_tui.core.training.devices import (
    Distributed,
    Precision,
    autocast_and_scaler,
    cpu_has_native_bf16,
    probe_bf16,
    resolve_device,
    resolve_precision,
)
from minigpt_tui.core.training.eta import EtaEstimator, evals_left
from minigpt_tui.core.training.first_evaluation import StartingWeights
from minigpt_tui.core.training.optim import clip_and_step, lr_at, make_optimizer
from minigpt_tui.core.training.start_from import load_start_weights
from minigpt_tui.core.training.time_budget import TimeBudget
from minigpt_tui.core.training.training_data import prepare_data
from minigpt_tui.core.training.write_failures import write_failure


class Trainer:
    def __init__(self, config: RunConfig, emit: Callable[[ev.Event], None], *,
                 recipe_name: str = "run", resume_dir: RunDir | Path | None = None, runs_root: Path | None = None,
                 start_from: RunDir | Path | None = None):
        self.config = config
        # --from: a new run starting from this run's weights and tokenizer (core/training/start_from.py)
        self.start_from = RunDir(start_from) if start_from is not None else None
        self.emit_fn = emit
        self.recipe_name = recipe_name
        self.resume = RunDir(resume_dir) if resume_dir is not None else None
        self.runs_root = runs_root
        self.stop_requested = False  # set from a signal handler: save and exit at the next step
        self.dist = Distributed.from_env()
        self.folder: RunDir | None = None  # rank 0 holds its lock while writing into it
        self.event_log: ev.EventLog | None = None  # rank 0: the run's events.jsonl, open while it trains
        self.meta = RunMeta()

    @property
    def run_dir(self) -> Path | None:
        return self.folder.path if self.folder is not None else None

    @property
    def best_val_loss(self) -> float | None:
        """The best validation loss of trained weights so far (None before the first one)."""
        return None if math.isinf(self.best_val) else self.best_val

    def emit(self, event: ev.Event) -> None:
        if self.dist.is_main:
            self._log_event(event)
            self.emit_fn(event)

    def _log_event(self, event: ev.Event) -> None:
        """Events also go to the run's events.jsonl, so that a process which is not the
        trainer's parent can follow the run (core/runs/follow.py); a Started begins a new file."""
        if isinstance(event, ev.Started) and self.folder is not None:
            self.event_log = ev.EventLog(self.folder.events_path)
            self.event_log.start(event)
        elif self.event_log is not None:
            self.event_log.write(event)

    # ---- set-up --------------------------------------------------------------------
    def _setup(self):
        cfg = self.config
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = self.dist.init(t.device) if self.dist.enabled else resolve_device(t.device)
        torch.manual_seed(t.seed + self.dist.rank)

        # Everything a user can get wrong is checked before the run folder exists.
        data = prepare_data(cfg, self.dist, self.resume, self.emit, self.start_from)
        self.tokenizer, self.corpus_name = data.tokenizer, data.corpus_name
        self.unseen_ids = data.unseen_ids
        self.train_stream = TokenStream(data.train_tokens, cfg.model.context_length, "training")
        self.val_stream = TokenStream(data.val_tokens, cfg.model.context_length, "validation")

        # The plain model (what is saved, sampled and evaluated); the training step calls
        # train_model, the same model or a DDP / torch.compile wrapper around it.
        self.model: LanguageModel = build_model(cfg.model, self.tokenizer.vocab_size).to(self.device)
        self.started_from = ""
        if self.start_from is not None and not self.resume:
            self.started_from = load_start_weights(self.model, self.start_from, self.device)
        self.params = count_parameters(self.model)
        self.receptive_field = self.model.receptive_field or 0  # 0: unbounded (an RNN)
        # The clipped parameters, listed once rather than by walking the modules every step (~0.07 ms).
        self.trained_params = [p for p in self.model.parameters() if p.requires_grad]
        self.precision = self._choose_precision()
        self.dtype = self.precision.dtype
        self.optimizer = make_optimizer(self.model, t, self.device, autocast_dtype=self.dtype)
        self.step = 0
        self.best_val = math.inf
        self.time_used_s = 0.0  # of the time budget, by the checkpoint resumed from
        if self.resume and self.resume.checkpoint_path("last").is_file():
            self._restore(self.resume.checkpoint_path("last"))
        elif self.resume and self.resume.checkpoint_path("best").is_file():
            raise CheckpointError(
                f"Run {self.resume.name} has best.pt but no last.pt (which holds the optimizer state), "
                "so it cannot be resumed; generate from it or start a new run.")
        # else: a run killed before its first checkpoint starts again from step 0, in its own folder
        budget_s = parse_duration(t.time_budget)
        self.budget = TimeBudget(budget_s, used_s=self.time_used_s) if budget_s else None
        if self.dist.is_main:
            self._prepare_run_dir()
        if self.dist.enabled:  # other ranks only read the folder; rank 0 holds the lock
            self.folder = RunDir(self.dist.broadcast(str(self.run_dir) if self.run_dir else ""))

        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.model, device_ids=ids)
        self.compiling = CompileChoice(cfg, self.device, self.dtype, t.max_steps - self.step, self.budget, self.dist)
        if self.compiling.on:
            self.train_model = torch.compile(self.train_model)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.autocast, self.scaler = autocast_and_scaler(self.device, self.dtype)
        if self.device.type == "cpu":  # last: what reading the corpus freed is not kept
            keep_freed_memory()  # no page faults for the same activations every step (allocator.py)
        # What exists now (torch, the model, the data) lives as long as the run: out of the cyclic
        # garbage collector's way. Its full collections otherwise walk all of it, ~170,000 objects
        # and ~80 ms every few hundred steps at the shakespeare-char shape (2 cores), in the middle
        # of a step. (Objects are still freed when their last reference goes.)
        gc.freeze()

    def _choose_precision(self) -> Precision:
        """train.precision; "auto" on a CPU times the model itself (devices.probe_bf16). A run
        resumed on a CPU keeps the precision it was trained in (bf16 only where this CPU has it
        natively), so that it goes on computing the same losses; under torchrun rank 0 decides."""
        t = self.config.train
        if t.precision == "auto" and self.resume and self.device.type == "cpu":
            try:
                recorded = self.resume.read_meta().precision
            except RunError:  # reported where the meta is read for real (_prepare_run_dir)
                recorded = ""
            if recorded == "float32" or (recorded == "bfloat16" and cpu_has_native_bf16()):
                return Precision(getattr(torch, recorded), f"auto: {recorded}, as this run was trained")
        probe = lambda: probe_bf16(self.model, t.batch_size, self.config.model.context_length)  # noqa: E731
        precision = resolve_precision(t.precision, self.device, probe if self.dist.is_main else None,
                                      width=self.config.model.n_embd)
        return self.dist.broadcast(precision) if self.dist.enabled else precision

    def _restore(self, path: Path):
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:  # (the optimizers' ValueErrors say why)
            why = f" ({err})" if isinstance(err, ValueError) else ""
            raise CheckpointError(f"Checkpoint file {path} does not match this run's config{why}; it cannot be resumed.") from None
        self.step, self.time_used_s = int(state["step"]), float(state.get("time_used_s", 0.0))
        best = state.get("best_val_loss")
        self.best_val = float(best) if best is not None else math.inf
        if "rng" in state and not self.dist.enabled:
            torch.set_rng_state(state["rng"].cpu())
        if self.device.type == "cuda" and state.get("cuda_rng") is not None and not self.dist.enabled:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())

    def _prepare_run_dir(self):
        cfg = self.config
        if self.resume:
            self.resume.lock()  # one trainer per run folder (before it is ours: a refusal must not touch it)
            # The meta is read before the folder counts as ours: should anything below fail,
            # fail() records the failure in the run's real meta, never in a blank one.
            self.meta = self.resume.read_meta()
            self.meta.error = ""  # a failure of an earlier attempt is no longer the run's state
            self.folder = self.resume
            self.folder.remove_temp_files()  # left by a writer that was killed
            # The last session's events would tell a follower this run is over: gone until ours begin.
            self.folder.events_path.unlink(missing_ok=True)
            # Records logged after the checkpoint we resume from are re-logged by this run.
            self.folder.truncate_metrics(self.step - 1)
        else:
            self.meta = RunMeta(
                recipe=self.recipe_name, family=cfg.model.family, tokenizer=cfg.data.tokenizer,
                corpus=self.corpus_name, vocab_size=self.tokenizer.vocab_size, params=self.params,
                created=time.time(), status="training", max_steps=cfg.train.max_steps,
                started_from=self.started_from, unseen_tokens=self.unseen_ids,
            )
            # The folder appears with its config, tokenizer and meta inside, already locked.
            # Named after the recipe, and after the corpus too when it is not the recipe's own.
            stem = run_stem(self.recipe_name, recipe_corpus(self.recipe_name), cfg.data.path or self.corpus_name,
                            tokenizer=cfg.data.tokenizer, family=cfg.model.family)
            if self.start_from is not None:  # gpt2 fine-tuned on tinyshakespeare/input.txt: gpt2-ft-tinyshakespeare
                stem = "-".join(filter(None, (self.start_from.name, "ft", corpus_slug(cfg.data.path or self.corpus_name))))
            self.folder = RunDir.create(stem, self.runs_root, {
                CONFIG_NAME: cfg.to_run_toml(),
                TOKENIZER_NAME: self.tokenizer.to_json(),
                META_NAME: self.meta.to_json(),
            })
            self.meta.name = self.folder.name
        self.meta.status, self.meta.max_steps, self.meta.device = "training", cfg.train.max_steps, str(self.device)
        self.meta.precision, self.meta.precision_note = self.precision.name, self.precision.note
        self.meta.world_size, self.meta.receptive_field = self.dist.world_size, self.receptive_field
        self.folder.write_meta(self.meta)

    # ---- the loop --------------------------------------------------------------------
    def run(self) -> ev.Done:
        """Train to max_steps (or until stop_requested). Raises TrainingError and the core's
        user-facing errors (ConfigError, CorpusError, CheckpointError, ...) for the caller to report."""
        try:
            done = self._run()
        except OSError as err:  # a full disk or an unwritable folder, outside the checkpoint writes
            raise TrainingError(write_failure(err, self.run_dir)) from None
        except MemoryError:
            raise TrainingError("Out of memory; make the model (model.n_embd, model.n_layer) or "
                                "train.batch_size smaller.") from None
        if self.dist.is_main:  # in the events file before the lock goes: a follower reads how it ended
            self._log_event(done)
        self.release()
        return done

    def _run(self) -> ev.Done:
        self._setup()
        cfg, t = self.config, self.config.train
        tokens_per_step = t.batch_size * t.grad_accum * cfg.model.context_length * self.dist.world_size
        self.emit(ev.Started(
            run_name=self.run_dir.name, run_dir=str(self.run_dir), family=cfg.model.family,
            tokenizer=cfg.data.tokenizer, corpus=self.corpus_name, vocab_size=self.tokenizer.vocab_size,
            ln_vocab=math.log(self.tokenizer.vocab_size), params=self.params, start_step=self.step,
            max_steps=t.max_steps, tokens_per_step=tokens_per_step, device=str(self.device),
            dtype=self.precision.name, precision_note=self.precision.note,
            started_from=self.meta.started_from, receptive_field=self.receptive_field,
            compiled=self.compiling.on, compile_note=self.compiling.note,
            time_budget_s=self.budget.seconds if self.budget else 0.0,
            time_budget_used_s=self.budget.used_before if self.budget else 0.0,
        ))
        self.val_batches = self.val_stream.eval_batches(t.eval_batches, t.batch_size, t.seed)
        self.train_eval_batches = self.train_stream.eval_batches(t.eval_batches, t.batch_size, t.seed + 1)
        started = self.session_started = time.perf_counter()
        if self.budget is not None and self.budget.used(0.0) >= self.budget.seconds:
            t.max_steps = self.step  # spent already: the final evaluation, and done
            self.budget.sized = True
        eta = EtaEstimator()  # over recent steps, never the warm-up after this (re)start
        pending: list[dict] = []  # metric records not yet written (flushed at log and eval points)
        window_start, window_steps = time.perf_counter(), 0
        start_step = self.step
        starting: StartingWeights | None = None
        reason = "finished"
        try:
            while True:
                if self.dist.any(self.stop_requested, self.device):  # every rank stops at the same step
                    reason = "stopped"
                    break
                step = self.step
                # (With a time budget, max_steps is only a guess until the first steps are timed.)
                at_end = step >= t.max_steps and (self.budget is None or self.budget.sized)
                if step == start_step == 0 and not at_end and not self.dist.enabled:
                    starting = StartingWeights(self.model)  # evaluated once step 0's loss is out
                elif step % t.eval_interval == 0 or at_end:
                    self._evaluation(step, step == start_step and step > 0, pending, eta)
                    window_start, window_steps = time.perf_counter(), 0
                if at_end:
                    break
                lr = lr_at(step, t)
                loss = self._train_step(step, lr)
                window_steps += 1
                self.step = step + 1
                if step % t.log_interval == 0 or self.step == t.max_steps:
                    # The loss of the global batch; .item() syncs with the device only here.
                    loss_value = self.dist.all_reduce(loss, average=True).item()
                    if not math.isfinite(loss_value):
                        raise TrainingError(
                            f"The loss became {loss_value} at step {step}; the last good checkpoint is kept. "
                            "Try a lower train.learning_rate or a larger train.warmup_steps."
                        )
                    # The time since the last log step is honest here (the .item() above waited
                    # for the device); per-step timings would measure only the kernel launches.
                    now = time.perf_counter()
                    eta.add(window_steps, now - window_start)
                    self.compiling.stretch(window_steps, now - window_start)
                    if self.budget is not None and self.budget.resize(self, now - started, eta):
                        self.meta.max_steps = t.max_steps  # (written with the next checkpoint)
                    tps = window_steps * tokens_per_step / max(now - window_start, 1e-9)
                    eta_s = eta.eta(t.max_steps - self.step, evals_left(self.step, t.max_steps, t.eval_interval))
                    self.emit(ev.Step(step=step, loss=loss_value, lr=lr, tokens_per_s=tps,
                                      elapsed_s=now - started, eta_s=eta_s, max_steps=t.max_steps))
                    pending.append({"step": step, "loss": loss_value, "lr": lr, "tokens_per_s": tps,
                                    "time": now - started})
                    if starting is not None:
                        self._evaluation(0, False, pending, eta, starting)
                        starting = None
                    window_start, window_steps = time.perf_counter(), 0
                    if len(pending) >= 20 and self.dist.is_main:
                        self.folder.append_metrics(pending)
                        pending.clear()
        finally:
            if self.dist.is_main and self.run_dir is not None:
                self.folder.append_metrics(pending)
        if reason == "stopped" and self.step > start_step:
            self._save(self.step, improved=False)
        self.compiling.finish()  # what its steps took, for "auto" in later runs of this shape
        self._update_meta(status=reason)
        return ev.Done(step=self.step, run_dir=str(self.run_dir), reason=reason,
                       best_val_loss=self.best_val_loss,
                       elapsed_s=time.perf_counter() - started)

    def _train_step(self, step: int, lr: float) -> torch.Tensor:
        t = self.config.train
        model = self.train_model
        if not self.model.training:  # (after an evaluation; train() walks every module: ~0.1 ms)
            model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for micro in range(t.grad_accum):
            x, y = self.train_stream.batch(step, t.batch_size, t.seed, self.dist.rank, self.dist.world_size, micro)
            x, y = self._to_device(x, y)
            # Under DDP, gradients are all-reduced only on the last micro-step.
            sync = self.dist.enabled and micro < t.grad_accum - 1
            with (model.no_sync() if sync else nullcontext()), self.autocast():
                logits, _ = model(x)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
            scaled = loss / t.grad_accum
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.detach()
        clip_and_step(self.optimizer, self.trained_params, t.grad_clip, self.scaler)
        self.optimizer.zero_grad(set_to_none=True)
        return total / t.grad_accum

    def _to_device(self, x, y):
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        if self.device.type != "cpu":
            return x.to(self.device), y.to(self.device)
        return x, y

    @torch.no_grad()
    def _mean_loss(self, batches) -> float:
        """Mean loss over the fixed batches; under DDP the ranks share them out and sum."""
        model = self.model
        model.eval()
        total = torch.zeros((), device=self.device)
        for x, y in batches[self.dist.rank :: self.dist.world_size]:
            x, y = self._to_device(x, y)
            with self.autocast():
                logits, _ = model(x)
                total += F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.reshape(-1))
        self.dist.all_reduce(total, average=False)
        return total.item() / len(batches)

    def _evaluation(self, step: int, resumed_here: bool, pending: list[dict], eta: EtaEstimator,
                    weights: StartingWeights | None = None) -> None:
        """An evaluation point: the steps logged before it reach the disk first, then its record."""
        eval_start = time.perf_counter()
        if self.dist.is_main:
            self.folder.append_metrics(pending)
        pending.clear()
        with weights.swapped_in(self.model) if weights is not None else nullcontext():
            evaluated = self._evaluate_and_save(step, resumed_here)
        if self.dist.is_main:
            self.folder.append_metrics(evaluated)
        eta.add_eval(time.perf_counter() - eval_start)

    def _evaluate_and_save(self, step: int, resumed_here: bool) -> list[dict]:
        train_loss = self._mean_loss(self.train_eval_batches)
        val_loss = self._mean_loss(self.val_batches)
        if not math.isfinite(val_loss):
            raise TrainingError(
                f"The validation loss became {val_loss} at step {step}; the last good checkpoint is kept. "
                "Try a lower train.learning_rate."
            )
        # The untrained model (step 0) is a reference point, not a result: "best" counts
        # trained weights only, so a run stopped before its first evaluation has no best.
        improved = step > 0 and val_loss < self.best_val
        if improved:
            self.best_val = val_loss
        best = self.best_val_loss
        self.emit(ev.Eval(step=step, train_loss=train_loss, val_loss=val_loss, best_val_loss=best))
        if self.dist.is_main and self.config.train.sample_tokens:
            self.emit(ev.Sample(step=step, text=self.sample()))
        if step > 0 and not resumed_here:
            self._save(step, improved)
        elif step > 0 and improved:  # resumed here: last.pt is this very state, but best.pt may lag
            self._save(step, improved, last=False)
        return [{"step": step, "val_loss": val_loss, "train_loss": train_loss}]

    def sample(self) -> str:
        settings = SamplingSettings(temperature=0.8, seed=self.config.train.seed,
                                    max_new_tokens=self.config.train.sample_tokens)
        sampler = Sampler(self.model, self.tokenizer, settings, banned=self.unseen_ids)
        with self.autocast():
            return "".join(e.text for e in sampler.generate(""))

    def _save(self, step: int, improved: bool, last: bool = True) -> None:
        if not self.dist.is_main:
            return
        model = unwrap(self.model)
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingError(
                f"The weights became NaN or infinite by step {step}; the last good checkpoint is kept. "
                "Try a lower train.learning_rate."
            )
        model_state = model.state_dict()
        best = self.best_val_loss
        state = {"model": model_state, "optimizer": self.optimizer.state_dict(), "step": step,
                 "best_val_loss": best, "rng": torch.get_rng_state()}
        if self.budget is not None:
            state["time_used_s"] = self.budget.used(time.perf_counter() - self.session_started)
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        try:
            if last:
                path = save_checkpoint(self.folder.checkpoint_path("last"), state)
                self.emit(ev.CheckpointSaved(step=step, path=str(path), kind="last"))
            if improved:
                path = save_checkpoint(self.folder.checkpoint_path("best"),
                                       {"model": model_state, "step": step, "best_val_loss": best})
                self.emit(ev.CheckpointSaved(step=step, path=str(path), kind="best"))
            self._update_meta(step=step, best_val_loss=best)
        except OSError as err:
            raise TrainingError(
                f"Could not write a checkpoint to {self.run_dir} ({err.strerror or err}); "
                "the previous checkpoint is intact. Free some disk space and resume the run."
            ) from None

    def _update_meta(self, **changes) -> None:
        if not self.dist.is_main or self.folder is None:
            return
        for name, value in changes.items():
            setattr(self.meta, name, value)
        self.meta.updated = time.time()
        self.folder.write_meta(self.meta)

    def fail(self, message: str) -> None:
        """Record a failed run in its meta (the caller reports the message) and let go of it."""
        if self.dist.is_main:
            self._log_event(ev.Error(message=message, run_dir=str(self.run_dir or "")))
        with suppress(OSError):
            self._update_meta(status="failed", error=message)
        self.release()

    def leave_process_group(self, finished: bool) -> None:
        """Under torchrun, after the run: drop the DDP wrapper (its reducer holds the gloo process
        group), then leave the group. A group still referenced when the interpreter exits is torn
        down during finalization, where gloo's threads now and then abort the process ("terminate
        called without an active exception") after a run that had finished."""
        if not self.dist.enabled:
            return
        self.train_model = self.model
        gc.collect()  # (DDP sits in reference cycles through its hooks)
        self.dist.close(finished)

    def release(self) -> None:
        """Let another process train this run folder (the lock also goes when the process ends), and
        give what _setup froze back to the garbage collector (a process may train again)."""
        gc.unfreeze()
        if self.event_log is not None:  # (what is emitted after this goes to the callback only)
            self.event_log.close()
            self.event_log = None
        if self.folder is not None:
            self.folder.release()
