"""`train_bench.py compare`: minigpt-tui against a GPT-2-style baseline, side by side, interleaved.

    python benchmarks/train_bench.py compare                 # the 2000-step recipe, blocks of 50 steps
    python benchmarks/train_bench.py compare --steps 60      # a quick check (no figure to publish)
    python benchmarks/train_bench.py compare --precision bf16 --threads 2 --block 25 --tag bf16
    python benchmarks/train_bench.py compare --baseline-allocator tuned   # the baseline with minigpt-tui's
                                                                          # malloc settings too

How it runs. minigpt-tui's real trainer (minigpt_tui.core.training.trainer.Trainer) trains the
`shakespeare-char-transformer` recipe (4 layers, 4 heads, 128 wide, context 64, batch 12, 2000
steps, dropout 0) with train.log_interval=1 and train.sample_tokens=0. Its event callback, after
every block of --block steps, has the baseline (benchmarks/baseline_gpt.py) train the same block of
steps in a process of its own (benchmarks/baseline_process.py: as a user runs nanoGPT, with its own
heap and glibc's default malloc settings unless --baseline-allocator tuned) and waits for it, so the
two alternate A, B, A, B, never at the same time, and load drift on a shared machine hits both.
The baseline uses minigpt-tui's AdamW settings (trainer.make_optimizer), its schedule
(trainer.lr_at) and the very batches the trainer drew: the trainer's TokenStream is wrapped to record
each batch it hands out; the baseline draws its own batch for the same step from the same tokens
(inside its timed step, as the trainer does) and checks it against the recorded one. Evaluation is
the same for both: the trainer's fixed 20 training and 20 validation batches at every
train.eval_interval and at the end. Each side checkpoints at its evaluations (minigpt-tui's trainer
as it always does; the baseline as nanoGPT does, when the validation loss improved).

What is timed. The time between two trainer callbacks is minigpt-tui's own (the baseline runs while
a callback waits), attributed to the event that ends it: a Step ends a training step (drawing the
batch, forward, backward, clipping, AdamW, the trainer's bookkeeping), an Eval ends an evaluation, a
CheckpointSaved a checkpoint write (log_interval=1 adds the trainer's per-step bookkeeping, a loss
.item() and a line each to events.jsonl and metrics.jsonl, well under a millisecond). The baseline's
step, evaluation and checkpoint are timed around the calls, in its process. Wall time = steps +
evaluations + checkpoints of that side (set-up, i.e. reading the corpus, building the model and
starting the baseline's process, is left out of both). Page faults per step: each process's minor
faults (getrusage) over its own steps. Time to the target validation loss is that
side's own cumulated time at the first evaluation at or below it. Per-step statistics leave out the
first --warmup steps. Spread: p10-p90 of step times; for the ratio, a bootstrap 95% interval of the
ratio of medians (resampling steps: the noise between steps) and the p10-p90 of the per-block ratios
(median step of minigpt-tui's block i over the baseline's block i, run right after it: the drift).

The hardware limit. Before training, the sustained matmul rate is measured on the threads training
uses, in float32 and in bfloat16: a 2048x2048 by 2048x2048 matmul for --peak-seconds and the
model's own largest shape (batch*context x n_embd by n_embd x 4*n_embd) for half that; the limit
for a precision is the higher of the two median rates. Each training step's achieved FLOP/s, FLOPS_PER_STEP / step time
(see flops_per_step), is reported as a fraction of the limit for the precision it trained in
(minigpt-tui: --precision; the baseline: float32).

The report. Above the table, the machine (benchmarks/machine.py: its class, "CPU with native bf16"
or "CPU without native bf16", the CPU and its features, torch's threads) with the load average
before and after; the table's header row names the class too, and the JSON has machine.info()'s
dict under "machine".
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import machine
import torch
from baseline_process import pack, unpack

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "shakespeare-char-transformer"
GET_DATA = ("Tiny Shakespeare is not at {path}; download "
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt "
            "to ../shared/data/tinyshakespeare/input.txt next to the repository, or pass --data PATH.")


# ---- the machine (benchmarks/machine.py) and its load ------------------------------------------

def page_faults() -> int:
    """This process's minor page faults so far (memory the OS maps in on first touch)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---- the hardware limit ------------------------------------------------------------------------

def matmul_rate(dtype: torch.dtype, m: int, k: int, n: int, seconds: float) -> dict:
    """Sustained rate of an (m x k) @ (k x n) matmul: 2*m*k*n FLOP per call, timed call by call
    for `seconds` after a short warm-up; the median call is the sustained rate, the best the peak."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    out = torch.empty(m, n, dtype=dtype)
    warm = time.perf_counter()
    while time.perf_counter() - warm < min(0.2, seconds / 4):  # thread pool and kernel selection (oneDNN JIT)
        torch.mm(a, b, out=out)
    rates = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(rates) < 5:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2 * m * k * n / (time.perf_counter() - t0))
    return {"shape": f"{m}x{k} @ {k}x{n}", "calls": len(rates), "gflops_median": statistics.median(rates) / 1e9,
            "gflops_best": max(rates) / 1e9}


def hardware_limit(tokens_per_step: int, n_embd: int, seconds: float) -> dict:
    """The matmul limit in float32 and bfloat16, each the higher median rate of two shapes: a large
    square matmul and the model's largest (batch*context x n_embd @ n_embd x 4*n_embd), which fits
    in cache and can beat the large one. Taking the higher keeps the fraction an honest one (<= 1
    on a quiet machine) whichever shape the CPU prefers."""
    from minigpt_tui.core.training.devices import cpu_has_native_bf16

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        # Emulated bf16 (a CPU without native bf16) runs near 1 GFLOP/s: a 2048-cube matmul would
        # take ~17 s a call, minutes for the few calls a median needs. 512 says as much there.
        side = 2048 if dtype == torch.float32 or cpu_has_native_bf16() else 512
        large = matmul_rate(dtype, side, side, side, seconds)
        model = matmul_rate(dtype, tokens_per_step, n_embd, 4 * n_embd, seconds / 2)
        out[name] = {"large": large, "model": model,
                     "limit_gflops": max(large["gflops_median"], model["gflops_median"])}
    return out


# ---- FLOPs -------------------------------------------------------------------------------------

def linear_weights(model: torch.nn.Module) -> int:
    """Elements of every distinct nn.Linear weight (the output head included, counted once if tied)."""
    seen = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            seen[id(module.weight)] = module.weight.numel()
    return sum(seen.values())


def flops_per_step(n_counted: int, n_layer: int, n_embd: int, context: int, vocab: int, tokens: int) -> dict:
    """Matmul FLOPs of one training step (forward + backward), the usual accounting (Kaplan et al.;
    nanoGPT's estimate_mfu):

        FLOPS_PER_STEP = tokens * (6 * N + 12 * n_layer * context * n_embd)

    * N = the elements of the matmul weights a token passes through: per block the attention's
      qkv (3 C^2) and output projection (C^2) and the MLP's C x 4C and 4C x C (8 C^2), so
      12 * n_layer * C^2, plus the output head C x V: N = 12 * n_layer * C^2 + C * V. n_counted is
      counted from the model itself (linear_weights: every nn.Linear weight) and reported next to
      that formula from the config.
      A weight is used once per token in the forward pass, a multiply and an add: 2 N per token.
      The backward pass computes the gradient of the input and of the weight, two matmuls of the
      same size: 4 N. Forward + backward = 6 N per token.
    * Attention: each token's query meets `context` keys (Q K^T) and as many values (A V), each
      a C-long dot product over the heads: 2 * 2 * context * C forward per layer, times 3 with the
      backward: 12 * n_layer * context * n_embd per token. This counts the full T x T score matrix,
      as is customary; a causal kernel needs only about half of it.
    * Not counted (memory-bound, little arithmetic): embeddings and position lookups, biases,
      norms, GELU, softmax, rotary, the loss, gradient clipping and AdamW.

    tokens = batch_size * context per step (grad_accum times that).
    """
    n_formula = 12 * n_layer * n_embd * n_embd + n_embd * vocab
    attention = 12 * n_layer * context * n_embd
    total = tokens * (6 * n_counted + attention)
    return {"flops_per_step": total, "flops_per_token": 6 * n_counted + attention, "matmul_weights": n_counted,
            "matmul_weights_formula": n_formula, "attention_flops_per_token": attention, "tokens_per_step": tokens,
            "formula": "tokens * (6 * N + 12 * n_layer * context * n_embd), N = 12 * n_layer * n_embd^2 + n_embd * vocab"}


# ---- statistics --------------------------------------------------------------------------------

def quantile(xs: list[float], q: float) -> float:
    """Linear-interpolation quantile (as numpy's default)."""
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def spread(xs: list[float]) -> dict:
    return {"n": len(xs), "median": statistics.median(xs), "p10": quantile(xs, 0.1), "p90": quantile(xs, 0.9),
            "p25": quantile(xs, 0.25), "p75": quantile(xs, 0.75), "mean": statistics.fmean(xs)}


def bootstrap_ratio(a: list[float], b: list[float], n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of median(a) / median(b), resampling each side's values."""
    gen = torch.Generator().manual_seed(seed)
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    ma = ta[torch.randint(len(a), (n, len(a)), generator=gen)].quantile(0.5, dim=1)
    mb = tb[torch.randint(len(b), (n, len(b)), generator=gen)].quantile(0.5, dim=1)
    r = ma / mb
    return r.quantile(0.025).item(), r.quantile(0.975).item()


# ---- the run -----------------------------------------------------------------------------------

class BatchRecorder:
    """Stands in for a TokenStream's `batch` method: hands out the real batches and keeps them,
    keyed by (step, micro-step), until they are sent to the baseline, which checks its own against them."""

    def __init__(self, stream):
        self.draw = stream.batch  # the real method
        self.seen: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.drawn = 0
        stream.batch = self

    def __call__(self, step, batch_size, seed, rank=0, world_size=1, micro=0):
        x, y = self.draw(step, batch_size, seed, rank, world_size, micro)
        self.seen[(step, micro)] = (x, y)  # views of a fresh gather, never written to: no copy
        self.drawn += 1
        return x, y

    def take(self, first: int, upto: int) -> dict:
        """The batches the trainer drew for steps first .. upto - 1, no longer kept here."""
        taken = {key: self.seen.pop(key) for key in sorted(self.seen) if first <= key[0] < upto}
        if len({step for step, _ in taken}) != upto - first:
            raise AssertionError(f"minigpt-tui's trainer did not draw every batch of steps {first}-{upto - 1} "
                                 "through its TokenStream.batch, so identical batches cannot be checked.")
        return taken


class SideBySide:
    """The trainer's event callback: times minigpt-tui's segments and runs the baseline's blocks."""

    def __init__(self, config, block: int, tmp: Path, target: float, baseline_compile: bool,
                 baseline_allocator: str = "default", log=sys.stderr):
        self.config = config
        self.t = config.train
        self.block = block
        self.tmp = tmp
        self.target = target
        self.baseline_compile = baseline_compile
        self.baseline_allocator = baseline_allocator
        self.log = log
        self.trainer = None
        self.last = time.perf_counter()
        self.last_faults = page_faults()
        self.mini = self._side()
        self.base = self._side()
        self.blocks: list[dict] = []  # [{"first": step, "last": step}]
        self.started = None
        self.child = None  # (process, connection) of the baseline

    @staticmethod
    def _side() -> dict:
        return {"step_s": [], "faults": [], "loss": [], "evals": [], "train_s": 0.0, "eval_s": 0.0, "save_s": 0.0,
                "other_s": 0.0, "clock": 0.0, "time_to_target_s": None, "steps_to_target": None}

    # the trainer's callback
    def __call__(self, e) -> None:
        from minigpt_tui.core.runs import events as ev

        enter = time.perf_counter()
        seg = enter - self.last
        faults = page_faults() - self.last_faults
        m = self.mini
        if isinstance(e, ev.Started):
            self.started = e
            self.mini["setup_s"] = seg
            if self.trainer.device.type != "cpu":
                raise SystemExit("compare runs on the CPU (train.device=cpu).")
            self.recorder = BatchRecorder(self.trainer.train_stream)  # before the first step draws
        elif isinstance(e, ev.Step):
            if e.step != len(m["step_s"]):
                raise AssertionError(f"expected a Step event for every step (log_interval=1); got step {e.step}")
            m["step_s"].append(seg)
            m["faults"].append(faults)
            m["loss"].append(e.loss)
            m["train_s"] += seg
            m["clock"] += seg
            done = e.step + 1
            if done % self.block == 0 or done == self.t.max_steps:
                self._baseline_block(done)
        elif isinstance(e, ev.Eval):
            m["eval_s"] += seg
            m["clock"] += seg
            self._record_eval(m, e.step, e.val_loss, e.train_loss)
            self.log.write(f"  step {e.step:5d}  minigpt-tui val {e.val_loss:.4f} ({m['clock']:.1f} s)\n")
        elif isinstance(e, ev.CheckpointSaved):
            m["save_s"] += seg
            m["clock"] += seg
        else:
            m["other_s"] += seg
            m["clock"] += seg
        self.last_faults = page_faults()
        self.last = time.perf_counter()

    def finish(self) -> None:
        """After trainer.run(): the trainer's time after its last event, the baseline's end, the final checks."""
        tail = time.perf_counter() - self.last
        self.mini["other_s"] += tail
        self.mini["clock"] += tail
        self.close()
        steps = self.t.max_steps
        if len(self.base["step_s"]) != steps or len(self.mini["step_s"]) != steps:
            raise AssertionError(f"expected {steps} steps of each; got minigpt-tui {len(self.mini['step_s'])}, "
                                 f"baseline {len(self.base['step_s'])}")
        if self.recorder.seen or self.recorder.drawn != steps * self.t.grad_accum:
            raise AssertionError(f"{len(self.recorder.seen)} of minigpt-tui's batches were never checked "
                                 f"({self.recorder.drawn} drawn for {steps} steps)")

    def close(self) -> None:
        """End the baseline's process (also when the run failed)."""
        if self.child is not None:
            process, conn = self.child
            self.child = None
            try:
                conn.send_bytes(pack(None))
            except OSError:
                pass
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
            conn.close()

    def _record_eval(self, side: dict, step: int, val: float, train: float) -> None:
        side["evals"].append({"step": step, "val_loss": val, "train_loss": train, "t": side["clock"]})
        if side["time_to_target_s"] is None and step > 0 and val <= self.target:
            side["time_to_target_s"], side["steps_to_target"] = side["clock"], step

    # the baseline, a process of its own (baseline_process.py)
    def _start_baseline(self) -> None:
        import multiprocessing

        import baseline_process
        from baseline_gpt import BaselineConfig

        tr = self.trainer
        mc = self.config.model
        if len(tr.val_batches) != self.t.eval_batches:
            raise AssertionError("the trainer's validation batches are not the configured number")
        # spawn: a fresh interpreter with a fresh heap, as the baseline would have run alone
        context = multiprocessing.get_context("spawn")
        conn, child_conn = context.Pipe()
        process = context.Process(target=baseline_process.main, args=(child_conn,), name="baseline", daemon=True)
        process.start()
        child_conn.close()
        self.child = (process, conn)
        self._ask({
            "config": BaselineConfig(vocab_size=tr.tokenizer.vocab_size, n_layer=mc.n_layer, n_head=mc.n_head,
                                     n_embd=mc.n_embd, context_length=mc.context_length, dropout=mc.dropout),
            "train": self.t, "threads": torch.get_num_threads(), "allocator": self.baseline_allocator,
            "compile": self.baseline_compile, "checkpoint": str(self.tmp / "baseline.pt"),
            "train_tokens": tr.train_stream.tokens.clone(), "context_length": mc.context_length,
            "val_batches": tr.val_batches, "train_eval_batches": tr.train_eval_batches})
        self.base_counts = self._answer()

    def _ask(self, message) -> None:
        self.child[1].send_bytes(pack(message))

    def _answer(self, timeout_s: float = 900.0):
        """The child's answer; a block takes seconds (a first compile, a minute), so 15 minutes
        without one means it hangs."""
        process, conn = self.child
        if not conn.poll(timeout_s):
            raise RuntimeError(f"the baseline's process gave no answer in {timeout_s:.0f} s")
        try:
            answer = unpack(conn.recv_bytes())
        except EOFError:
            raise RuntimeError(f"the baseline's process ended (exit code {process.exitcode})") from None
        if isinstance(answer, tuple) and answer and answer[0] == "error":
            raise RuntimeError("the baseline's process failed:\n" + answer[1])
        return answer

    def _baseline_block(self, upto: int) -> None:
        if self.child is None:  # at the first block: the trainer's evaluation batches exist by then
            self._start_baseline()
        b = self.base
        first = len(b["step_s"])
        self._ask({"upto": upto, "batches": self.recorder.take(first, upto)})
        for event in self._answer():
            if event[0] == "step":
                _, dt, loss, faults = event
                b["step_s"].append(dt)
                b["faults"].append(faults)
                b["loss"].append(loss)
                b["train_s"] += dt
                b["clock"] += dt
            else:
                _, step, val, train, eval_s, save_s = event
                b["eval_s"] += eval_s
                b["save_s"] += save_s
                b["clock"] += eval_s
                self._record_eval(b, step, val, train)  # at the clock after the evaluation, as minigpt-tui's
                b["clock"] += save_s
                self.log.write(f"  step {step:5d}  baseline    val {val:.4f} ({b['clock']:.1f} s)\n")
        self.blocks.append({"first": first, "last": upto - 1})


def time_to(evals: list[dict], loss: float) -> float | None:
    """The side's time at its first evaluation after step 0 with validation loss <= `loss`."""
    return next((e["t"] for e in evals if e["step"] > 0 and e["val_loss"] <= loss), None)


def run_compare(args, tmp: Path) -> dict:
    """Set up, measure the hardware limit, train both interleaved, and summarise (see the module doc)."""
    from minigpt_tui.core.config import RunConfig
    from minigpt_tui.core.paths import find_recipe
    from minigpt_tui.core.training.trainer import Trainer

    if args.block < 1:
        raise SystemExit("--block must be at least 1 step.")
    data = Path(args.data)
    if data.is_dir():
        data = data / "tinyshakespeare" / "input.txt"
    if not data.is_file():
        raise SystemExit(GET_DATA.format(path=data))
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    load_before = loadavg()

    overrides = [f"data.path={json.dumps(str(data))}", "data.val_fraction=0.1", "train.log_interval=1",
                 "train.sample_tokens=0", 'train.device="cpu"', f"train.threads={threads}"]
    if args.steps:
        overrides.append(f"train.max_steps={args.steps}")
    if args.precision != "auto":
        overrides.append(f'train.precision="{args.precision}"')
    config = RunConfig.load(find_recipe(RECIPE)).with_overrides(overrides + list(args.set))
    m, t = config.model, config.train
    tokens = t.batch_size * t.grad_accum * m.context_length

    print(f"measuring the matmul limit ({threads} threads) ...", file=sys.stderr, flush=True)
    limit = hardware_limit(t.batch_size * m.context_length, m.n_embd, args.peak_seconds)

    print(f"training {RECIPE} x {t.max_steps} steps: minigpt-tui and the baseline, alternating blocks of "
          f"{args.block} steps ...", file=sys.stderr, flush=True)
    sbs = SideBySide(config, args.block, tmp, args.target, args.baseline_compile, args.baseline_allocator)
    trainer = Trainer(config, sbs, recipe_name=f"{RECIPE}-compare")
    sbs.trainer = trainer
    try:
        done = trainer.run()
        if done.reason != "finished":
            raise SystemExit(f"minigpt-tui's run ended early ({done.reason}).")
        sbs.finish()
    finally:
        sbs.close()
    load_after = loadavg()

    vocab = trainer.tokenizer.vocab_size
    mini_precision = "bf16" if sbs.started.dtype == "bfloat16" else "fp32" if sbs.started.dtype == "float32" \
        else sbs.started.dtype
    flops = {"minigpt": flops_per_step(linear_weights(trainer.model), m.n_layer, m.n_embd, m.context_length,
                                       vocab, tokens),
             "baseline": flops_per_step(sbs.base_counts["matmul_weights"], m.n_layer, m.n_embd, m.context_length,
                                        vocab, tokens)}
    warm = min(args.warmup, t.max_steps // 5)

    def side_summary(side: dict, name: str, precision: str, params: int) -> dict:
        times = side["step_s"][warm:]
        st = spread(times)
        f = flops[name]["flops_per_step"]
        peak = limit.get(precision, limit["fp32"])["limit_gflops"] * 1e9
        achieved = [f / x for x in times]
        fractions = [a / peak for a in achieved]
        return {
            "precision": precision, "params": params, "step_ms": {k: (v * 1000 if k != "n" else v) for k, v in st.items()},
            "tokens_per_s_median_step": tokens / st["median"], "tokens_per_s_all_steps": tokens * len(times) / sum(times),
            "achieved_gflops_median_step": f / st["median"] / 1e9,
            "limit_fraction": {"median": statistics.median(fractions), "p10": quantile(fractions, 0.1),
                               "p90": quantile(fractions, 0.9)},
            "wall_s": side["clock"], "train_s": side["train_s"], "eval_s": side["eval_s"], "save_s": side["save_s"],
            "other_s": side["other_s"], "time_to_target_s": side["time_to_target_s"],
            "steps_to_target": side["steps_to_target"], "final_val_loss": side["evals"][-1]["val_loss"],
            "best_val_loss": min(e["val_loss"] for e in side["evals"] if e["step"] > 0),
            "loss_at_step_0": side["loss"][0], "evals": side["evals"],
            "page_faults_per_step": spread(side["faults"][warm:]),
        }

    mini = side_summary(sbs.mini, "minigpt", mini_precision, trainer.params)
    base = side_summary(sbs.base, "baseline", "fp32", sbs.base_counts["params"])
    mt, bt = sbs.mini["step_s"][warm:], sbs.base["step_s"][warm:]
    block_ratios = []
    for blk in sbs.blocks:
        lo, hi = max(blk["first"], warm), blk["last"] + 1
        if hi - lo >= 3:
            block_ratios.append(statistics.median(sbs.mini["step_s"][lo:hi]) / statistics.median(sbs.base["step_s"][lo:hi]))
    boot = bootstrap_ratio(mt, bt)
    ratios = {
        "step_time_ratio_of_medians": statistics.median(mt) / statistics.median(bt),
        "step_time_bootstrap_95": list(boot),
        "step_time_per_block": {"n": len(block_ratios),
                                "p10": quantile(block_ratios, 0.1) if block_ratios else None,
                                "p90": quantile(block_ratios, 0.9) if block_ratios else None,
                                "min": min(block_ratios, default=None), "max": max(block_ratios, default=None)},
        "tokens_per_s_median_step": mini["tokens_per_s_median_step"] / base["tokens_per_s_median_step"],
        "tokens_per_s_all_steps": mini["tokens_per_s_all_steps"] / base["tokens_per_s_all_steps"],
        "wall": mini["wall_s"] / base["wall_s"],
        "time_to_target": (mini["time_to_target_s"] / base["time_to_target_s"]
                           if mini["time_to_target_s"] and base["time_to_target_s"] else None),
        "final_val_loss_difference": mini["final_val_loss"] - base["final_val_loss"],
        # The issue's yardstick: minigpt-tui's time to the loss the baseline ends at, over the baseline's
        # whole run (at evaluation granularity: the first evaluation at or below it).
        "time_to_baseline_final": time_to(mini["evals"], base["final_val_loss"]) / base["wall_s"]
        if time_to(mini["evals"], base["final_val_loss"]) is not None else None,
    }
    result = {
        "benchmark": "compare", "recipe": RECIPE, "overrides": list(args.set),
        "data": os.path.relpath(data, ROOT), "steps": t.max_steps, "block": args.block, "warmup_steps_skipped": warm,
        "target_val_loss": args.target, "eval_interval": t.eval_interval, "eval_batches": t.eval_batches,
        "shape": {"n_layer": m.n_layer, "n_head": m.n_head, "n_embd": m.n_embd, "context": m.context_length,
                  "batch": t.batch_size, "grad_accum": t.grad_accum, "vocab": vocab, "tokens_per_step": tokens,
                  "dropout": m.dropout, "compile": trainer.compiling.on, "baseline_compile": args.baseline_compile,
                  "baseline_allocator": args.baseline_allocator},
        "machine": machine.info("cpu"), "load_before": load_before, "load_after": load_after,
        "hardware_limit": limit, "flops": flops, "minigpt": mini, "baseline": base, "ratios": ratios,
        "identical_batches_checked": sbs.recorder.drawn,
        "per_step_s": {"minigpt": sbs.mini["step_s"], "baseline": sbs.base["step_s"]},
        "per_step_loss": {"minigpt": sbs.mini["loss"], "baseline": sbs.base["loss"]},
    }
    result["markdown"] = markdown(result)
    return result


# ---- the table ---------------------------------------------------------------------------------

def markdown(r: dict) -> str:
    mi, ba, ra, sh, hw = r["minigpt"], r["baseline"], r["ratios"], r["shape"], r["hardware_limit"]
    mach = r["machine"]
    fl = r["flops"]["minigpt"]

    def ms(side):
        s = side["step_ms"]
        return f"{s['median']:.1f} ms [{s['p10']:.1f}-{s['p90']:.1f}]"

    def frac(side):
        f = side["limit_fraction"]
        return (f"{side['achieved_gflops_median_step']:.0f} GFLOP/s = {f['median']:.2f} of the {side['precision']} "
                f"limit [{f['p10']:.2f}-{f['p90']:.2f}]")

    def wall(side):
        return (f"{side['wall_s']:.1f} s (steps {side['train_s']:.1f}, eval {side['eval_s']:.1f}, "
                f"checkpoints {side['save_s']:.1f})")

    def target(side):
        if side["time_to_target_s"] is None:
            return f"not reached (best {side['best_val_loss']:.3f})"
        return f"{side['time_to_target_s']:.1f} s (step {side['steps_to_target']})"

    def faults(side):
        f = side["page_faults_per_step"]
        return f"{f['median']:,.0f} [{f['p10']:,.0f}-{f['p90']:,.0f}]"

    def opt(x, fmt):
        return "n/a" if x is None else format(x, fmt)

    blk = ra["step_time_per_block"]
    block_range = (f"per-block p10-p90 {blk['p10']:.2f}-{blk['p90']:.2f}, {blk['n']} blocks"
                   if blk["n"] else "no full block")
    mini_label = f"minigpt-tui ({mi['precision']}{', compile' if sh['compile'] else ''})"
    base_label = f"baseline, GPT-2 style ({ba['precision']}{', compile' if sh['baseline_compile'] else ''})"
    n_evals = len(mi["evals"])
    lines = [
        f"Side by side, `{r['recipe']}` shape ({sh['n_layer']} layers, {sh['n_head']} heads, "
        f"{sh['n_embd']} wide, context {sh['context']}, batch {sh['batch']}, vocabulary {sh['vocab']}, "
        f"dropout {sh['dropout']:g}), {r['steps']} steps each on `{r['data']}`, alternating blocks of "
        f"{r['block']} steps (the baseline in a process of its own, with "
        f"{'the same malloc settings as minigpt-tui' if sh.get('baseline_allocator') == 'tuned' else 'glibc malloc defaults, as run alone'}), "
        f"the same batches (checked: {r['identical_batches_checked']}), the same AdamW and "
        f"schedule; step statistics skip the first {r['warmup_steps_skipped']} steps.",
        "",
        f"{machine.summary(mach, load=False).rstrip('.')}; load average (1, 5, 15 min) {r['load_before']} before, "
        f"{r['load_after']} after.",
        "",
        f"Hardware limit, the higher median matmul rate of two shapes on {mach['torch_threads']} threads: "
        f"float32 {hw['fp32']['limit_gflops']:.0f} GFLOP/s, bf16 {hw['bf16']['limit_gflops']:.0f} GFLOP/s "
        f"({hw['fp32']['large']['shape']}: {hw['fp32']['large']['gflops_median']:.0f} and "
        f"{hw['bf16']['large']['gflops_median']:.0f}; the model's {hw['fp32']['model']['shape']}: "
        f"{hw['fp32']['model']['gflops_median']:.0f} and {hw['bf16']['model']['gflops_median']:.0f}). "
        f"FLOPs per step: {fl['flops_per_step'] / 1e9:.3f} G = {fl['tokens_per_step']} tokens x (6 x "
        f"{fl['matmul_weights']:,} matmul weights + 12 x {sh['n_layer']} x {sh['context']} x {sh['n_embd']} "
        "attention), forward + backward (see `flops_per_step` in benchmarks/side_by_side.py).",
        "",
        f"| what, on a {mach['class']} | {base_label} | {mini_label} | minigpt-tui / baseline |",
        "|---|---|---|---|",
        f"| training step, median [p10-p90] | {ms(ba)} | {ms(mi)} | {ra['step_time_ratio_of_medians']:.2f}x "
        f"(bootstrap 95% {ra['step_time_bootstrap_95'][0]:.2f}-{ra['step_time_bootstrap_95'][1]:.2f}; "
        f"{block_range}) |",
        f"| training tokens/s: median step; all steps | {ba['tokens_per_s_median_step']:,.0f}; "
        f"{ba['tokens_per_s_all_steps']:,.0f} | {mi['tokens_per_s_median_step']:,.0f}; "
        f"{mi['tokens_per_s_all_steps']:,.0f} | {ra['tokens_per_s_median_step']:.2f}x; "
        f"{ra['tokens_per_s_all_steps']:.2f}x |",
        f"| achieved FLOP/s at the median step, fraction of the limit [p10-p90] | {frac(ba)} | {frac(mi)} | |",
        f"| wall time, {r['steps']} steps with {n_evals} evaluations ({r['eval_batches']}+{r['eval_batches']} "
        f"batches) | {wall(ba)} | {wall(mi)} | {ra['wall']:.2f}x |",
        f"| time to validation loss {r['target_val_loss']} | {target(ba)} | {target(mi)} | "
        f"{opt(ra['time_to_target'], '.2f')}{'x' if ra['time_to_target'] else ''} |",
        f"| time to the baseline's final validation loss ({ba['final_val_loss']:.3f}) | {ba['wall_s']:.1f} s (its "
        f"whole run) | {opt(time_to(mi['evals'], ba['final_val_loss']), '.1f')} s | "
        f"{opt(ra.get('time_to_baseline_final'), '.2f')}x |",
        f"| final validation loss | {ba['final_val_loss']:.4f} | {mi['final_val_loss']:.4f} | "
        f"{ra['final_val_loss_difference']:+.4f} |",
        f"| page faults per step, median [p10-p90] | {faults(ba)} | {faults(mi)} | |",
        f"| parameters | {ba['params']:,} | {mi['params']:,} | |",
    ]
    if max(mi["limit_fraction"]["median"], ba["limit_fraction"]["median"]) > 1:
        lines += ["", "A fraction above 1 means the matmul limit was measured while the machine was busy; "
                      "rerun on a quiet machine."]
    return "\n".join(lines)
