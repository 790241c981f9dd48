"""The baseline as a program of its own: the child process `compare` (side_by_side.py) drives.

A user runs nanoGPT as its own Python process, so the baseline runs as one: its own heap (glibc's
default malloc thresholds, unless `--baseline-allocator tuned` gives it the ones minigpt-tui's
trainer sets, core/training/allocator.py), its own threads and nothing of minigpt-tui's state. Sharing the
trainer's process would hand it the trainer's allocator settings and hide their effect.

The parent and this child never run at the same time: the parent sends a block of steps and waits
for the answer, so blocks still alternate A, B, A, B. The conversation, over a multiprocessing
pipe (tensors travel as torch.save bytes):

    parent -> child   {"config": BaselineConfig, "train": TrainConfig, "threads", "allocator",
                       "compile", "checkpoint": path, "train_tokens", "context_length",
                       "val_batches", "train_eval_batches"}
    child -> parent   {"params", "matmul_weights"}
    parent -> child   {"upto": step, "batches": {(step, micro): (x, y)}}   (one block)
    child -> parent   [("step", seconds, loss, page faults), ("eval", step, val, train, eval_s, save_s), ...]
    parent -> child   None                                                    (the end)

Any failure in the child comes back as ("error", traceback) in place of an answer.

Each step draws its own batch from the same TokenStream code the trainer uses, inside the timed
step as the trainer does, then checks it against the parent's copy of what the trainer drew
(outside the timing). Evaluation uses the trainer's fixed batches; a checkpoint is written when the
validation loss improved, as nanoGPT does.
"""

from __future__ import annotations

import io
import math
import time
import traceback

import torch


def pack(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def unpack(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=False)


def main(conn) -> None:
    """The child's whole life: set up from the first message, then train block after block."""
    try:
        child = BaselineChild(unpack(conn.recv_bytes()))
        conn.send_bytes(pack(child.counts()))
        while (message := unpack(conn.recv_bytes())) is not None:
            conn.send_bytes(pack(child.block(message["upto"], message["batches"])))
    except Exception:  # noqa: BLE001 - everything goes back to the parent, which stops the run
        conn.send_bytes(pack(("error", traceback.format_exc())))
    finally:
        conn.close()


class BaselineChild:
    def __init__(self, init: dict):
        from baseline_gpt import BaselineGPT
        from side_by_side import linear_weights

        from minigpt_tui.core.data.batching import TokenStream
        from minigpt_tui.core.training.allocator import keep_freed_memory
        from minigpt_tui.core.training.optim import make_optimizer

        if init["allocator"] == "tuned" and not keep_freed_memory():
            raise RuntimeError("--baseline-allocator tuned needs glibc's malloc")
        torch.set_num_threads(init["threads"])
        self.t = init["train"]
        self.stream = TokenStream(init["train_tokens"], init["context_length"], "training")
        self.val_batches, self.train_eval_batches = init["val_batches"], init["train_eval_batches"]
        self.checkpoint = init["checkpoint"]
        torch.manual_seed(self.t.seed)
        self.model = BaselineGPT(init["config"])
        self.train_model = torch.compile(self.model) if init["compile"] else self.model
        self.optimizer = make_optimizer(self.model, self.t, torch.device("cpu"))
        self.matmul_weights = linear_weights(self.model)
        self.best = math.inf
        self.step = 0

    def counts(self) -> dict:
        return {"params": sum(p.numel() for p in self.model.parameters()), "matmul_weights": self.matmul_weights}

    def block(self, upto: int, batches: dict) -> list[tuple]:
        """Train steps self.step .. upto - 1 (evaluating where the trainer does); what happened, in order."""
        from baseline_gpt import train_step
        from side_by_side import page_faults

        from minigpt_tui.core.training.optim import lr_at

        t, events = self.t, []
        while self.step < upto:
            j = self.step
            if j % t.eval_interval == 0:
                events.append(self.evaluate(j))
            faults = page_faults()
            t0 = time.perf_counter()
            micro = [self.stream.batch(j, t.batch_size, t.seed, 0, 1, k) for k in range(t.grad_accum)]
            loss = train_step(self.train_model, self.optimizer, micro, lr_at(j, t), t.grad_clip)
            dt = time.perf_counter() - t0
            faults = page_faults() - faults
            for k, (x, y) in enumerate(micro):  # outside the timing
                if (j, k) not in batches:
                    raise AssertionError(f"the parent sent no batch for step {j} (micro-step {k})")
                rx, ry = batches.pop((j, k))
                if not (torch.equal(x, rx) and torch.equal(y, ry)):
                    raise AssertionError(f"The baseline's batch for step {j} differs from minigpt-tui's.")
            events.append(("step", dt, loss, faults))
            self.step += 1
        if batches:
            raise AssertionError(f"batches for steps the baseline did not train: {sorted(batches)[:3]}")
        if self.step == t.max_steps:
            events.append(self.evaluate(t.max_steps))
        return events

    def evaluate(self, step: int) -> tuple:
        from baseline_gpt import mean_loss

        t0 = time.perf_counter()
        train = mean_loss(self.model, self.train_eval_batches)
        val = mean_loss(self.model, self.val_batches)
        eval_s = time.perf_counter() - t0
        save_s = 0.0
        if step > 0 and val < self.best:  # nanoGPT: checkpoint when the validation loss improved
            self.best = val
            t0 = time.perf_counter()
            torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "step": step, "best_val_loss": val}, self.checkpoint)
            save_s = time.perf_counter() - t0
        return ("eval", step, val, train, eval_s, save_s)
