"""Imported models against transformers on the same weights, side by side (not a test).

    python benchmarks/pretrained_bench.py sampling [--models gpt2,smollm2] [--tokens 128] [--rounds 5]
    python benchmarks/pretrained_bench.py finetune [--batch 4] [--seq 256] [--rounds 4]
    python benchmarks/pretrained_bench.py chatmem [--reply 200]
    python benchmarks/pretrained_bench.py all

Models are random (no hub): transformers builds the GPT-2 124M shape (12 layers, 12 heads, 768
wide, 1024 positions, vocabulary 50257) and the SmolLM2-135M shape (Llama: 576 wide, MLP 1536,
30 layers, 9 heads, 3 key/value heads, 8192 positions, rope theta 1e5, vocabulary 49152, tied),
float32, saves them with save_pretrained into a temporary folder (with a small byte-level BPE:
the model's vocab_size is larger than the tokenizer's, which the importer accepts) and
core.pretrained.import_model makes a run of the folder. Both sides then hold the same weights.

sampling   greedy decoding of --tokens new tokens after a ~20-token prompt: our Sampler (the KV ring
           buffer, events with top-5 probabilities, as the app and CLI use it) against
           transformers' model.generate(do_sample=False, max_new_tokens=N) (its default dynamic
           cache; a streamer notes the first token). Rounds alternate the order (ours first in
           even rounds, theirs first in odd ones) in one process, after one untimed warm-up each;
           the token ids are compared (random weights can have near-ties that float rounding
           breaks differently: the first differing index is reported). Tokens/s counts the whole
           call (prefill included); TTFT is the time to the first new token; the CPU-time ratio
           (theirs/ours process CPU seconds per generation) moves less than wall time on a
           machine others share.
finetune   training steps of the GPT-2 shape on the same random batches (--batch x --seq tokens):
           ours as core/training/trainer.py's _train_step does it (train mode, forward with
           state=None, cross-entropy, backward, clip_grad_norm_ 1.0, AdamW from
           core/training/optim.make_optimizer, fused on the CPU) against transformers'
           model(input_ids, labels=..., shift_labels=...).loss with the same clipping and the
           same AdamW (groups, hyperparameters, fused). Dropout 0 on both sides (imports carry
           none), so both compute the same losses (printed). Rounds alternate as above. Peak
           memory: each side alone in a fresh subprocess (load, then --mem-steps steps):
           VmHWM of /proc/self/status, and the increase over VmRSS after imports.
chatmem    peak RSS of one chat turn on the SmolLM2 shape: a fresh subprocess loads the run,
           resets the high-water mark (/proc/self/clear_refs), then core.generation.chat.Chat
           says a ~30-token user turn and reads a greedy reply of --reply tokens; prints VmRSS
           before, VmHWM during the turn, and the KV cache's allocated bytes (the chat's marks,
           copies of the cache at turn boundaries, included).

Every table starts with the machine line (benchmarks/machine.py): its class ("CPU with native bf16"
or "CPU without native bf16"), the CPU model, its AVX2/AVX-512/avx512_bf16/AMX features, torch's CPU
capability, torch version and thread count (--threads, default: every usable core, for both sides)
and the load average, e.g. "Machine class: CPU without native bf16 (AVX2). CPU: ... features avx2
fma ...; torch ... threads; load average ...".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's code, unless PYTHONPATH names another (a before/after run)
    sys.path.insert(1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]), str(ROOT))

PROMPT = "First Citizen:\nBefore we proceed any further, hear me speak."  # 21 tokens
USER_TURN = "You are all resolved rather to die than to famish? Before we proceed any further, hear me."
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n") * 8
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SHAPES = ("gpt2", "smollm2")


# ---- the machine -------------------------------------------------------------------------------
def machine_line() -> str:
    """benchmarks/machine.py's line. Imported here, not at the top: the memory subprocesses measure
    their imports and must not hold minigpt-tui's before their baseline."""
    import machine

    return machine.describe()


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


# ---- the models --------------------------------------------------------------------------------
def small_tokenizer(vocab_size: int = 320):
    """A byte-level BPE trained on TEXT (with ChatML's specials), as transformers' fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.chat_template = CHATML
    return fast


def hf_model(shape: str):
    """A random transformers model of the shape, float32, in eval mode; no BOS/EOS (so that greedy
    decoding never stops early on either side)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if shape == "gpt2":
        config = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                            bos_token_id=None, eos_token_id=None, tie_word_embeddings=True)
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                             num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                             rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                             bos_token_id=None, eos_token_id=None, pad_token_id=None)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    return model.eval()


def make_folder(shape: str, root: Path) -> Path:
    folder = root / f"hf-{shape}"
    if not (folder / "config.json").is_file():
        model = hf_model(shape)
        model.save_pretrained(folder)
        small_tokenizer().save_pretrained(folder)
        del model
    return folder


def import_run(folder: Path, root: Path, name: str) -> Path:
    from minigpt_tui.core.pretrained.importer import import_model

    runs = root / "runs"
    if (runs / name).is_dir():
        return runs / name
    fetch = lambda s, progress=True: SimpleNamespace(path=Path(s), source=s, revision=None)  # noqa: E731
    return import_model(str(folder), name=name, runs_root=runs, progress=False, fetch=fetch).path


def load_ours(run_path: Path):
    """(model, tokenizer) of the imported run, the tokenizer's end ids cleared (exactly N tokens)."""
    from minigpt_tui.core.runs.run_dir import RunDir

    loaded = RunDir(run_path).load()
    return loaded.model, NoEnds(loaded.tokenizer)


class NoEnds:
    """A tokenizer as it is, except that no token ends a reply (random weights could pick one)."""

    end_ids: frozenset[int] = frozenset()

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def load_theirs(folder: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32").eval()
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


# ---- sampling ----------------------------------------------------------------------------------
def sampling(args, root: Path) -> dict:
    import torch
    from transformers.generation.streamers import BaseStreamer

    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings, prompt_ids

    class FirstToken(BaseStreamer):
        def __init__(self):
            self.calls, self.first = 0, None

        def put(self, value):
            self.calls += 1
            if self.calls == 2:  # (the first call is the prompt)
                self.first = time.perf_counter()

        def end(self):
            pass

    results = {}
    for shape in args.models.split(","):
        folder = make_folder(shape, root)
        ours_model, tok = load_ours(import_run(folder, root, shape))
        theirs_model = load_theirs(folder)
        sampler = Sampler(ours_model, tok, SamplingSettings(temperature=0, max_new_tokens=args.tokens))
        ids = prompt_ids(tok, PROMPT)
        x = torch.tensor([ids])

        def ours():
            cpu, start = time.process_time(), time.perf_counter()
            first, out = None, []
            for event in sampler.generate(PROMPT):
                if first is None:
                    first = time.perf_counter()
                out.append(event.token_id)
            end = time.perf_counter()
            return out, end - start, first - start, time.process_time() - cpu

        def theirs():
            streamer = FirstToken()
            cpu, start = time.process_time(), time.perf_counter()
            with torch.inference_mode():
                y = theirs_model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                          max_new_tokens=args.tokens, min_new_tokens=args.tokens, streamer=streamer)
            end = time.perf_counter()
            return y[0, len(ids):].tolist(), end - start, streamer.first - start, time.process_time() - cpu

        saved = sampler.settings.max_new_tokens
        sampler.settings.max_new_tokens = 8
        ours()  # warm-up (the decode plan, allocator, kernels)
        sampler.settings.max_new_tokens = saved
        theirs()
        rows, mismatch = [], None
        for r in range(args.rounds):
            order = (("ours", ours), ("theirs", theirs)) if r % 2 == 0 else (("theirs", theirs), ("ours", ours))
            got = {name: fn() for name, fn in order}
            (a, ta, fa, ca), (b, tb, fb, cb) = got["ours"], got["theirs"]
            if a != b and mismatch is None:
                i = next((k for k, (p, q) in enumerate(zip(a, b)) if p != q), min(len(a), len(b)))
                mismatch = {"round": r, "first_index": i, "ours": a[i : i + 5], "theirs": b[i : i + 5]}
            rows.append({"ours_tps": len(a) / ta, "theirs_tps": len(b) / tb, "ratio": tb / ta,
                         "ours_ttft": fa, "theirs_ttft": fb, "ttft_ratio": fb / fa, "same_ids": a == b,
                         "cpu_ratio": cb / ca})
            print(f"  {shape} round {r}: ours {len(a) / ta:.1f} tok/s, theirs {len(b) / tb:.1f} tok/s, "
                  f"ratio {tb / ta:.3f} (CPU time {cb / ca:.3f}), same ids {a == b}", flush=True)
        results[shape] = {"prompt_tokens": len(ids), "rows": rows, "mismatch": mismatch}
        del ours_model, theirs_model, sampler
    print()
    print(machine_line())
    lengths = ", ".join(f"{s}: {v['prompt_tokens']}" for s, v in results.items())
    print(f"Greedy sampling, {args.tokens} new tokens after a prompt of {lengths} tokens, float32, "
          f"{args.rounds} interleaved rounds; median (min-max); ratio = ours/theirs speed (>1: ours faster)")
    print(f"{'model':<9} {'ours tok/s':>18} {'theirs tok/s':>18} {'ratio':>20} {'ours TTFT ms':>18} "
          f"{'theirs TTFT ms':>18} {'TTFT ratio':>20} {'CPU-time ratio':>20}  ids")
    for shape, res in results.items():
        rows = res["rows"]
        col = lambda k, f="{:.1f}": spread([row[k] for row in rows], f)  # noqa: E731
        ttft = lambda k: spread([row[k] * 1000 for row in rows], "{:.1f}")  # noqa: E731
        same = "identical" if all(row["same_ids"] for row in rows) else f"DIFFER {res['mismatch']}"
        print(f"{shape:<9} {col('ours_tps'):>18} {col('theirs_tps'):>18} {col('ratio', '{:.3f}'):>20} "
              f"{ttft('ours_ttft'):>18} {ttft('theirs_ttft'):>18} {col('ttft_ratio', '{:.3f}'):>20} {col('cpu_ratio', '{:.3f}'):>20}  {same}")
    return results


# ---- fine-tuning -------------------------------------------------------------------------------
def optimizer_for(model, cfg):
    import torch

    from minigpt_tui.core.training.optim import make_optimizer

    return make_optimizer(model, cfg, torch.device("cpu"))


def steppers(root: Path, which: str, batch: int, seq: int):
    """{side: step(x, y) -> loss tensor} for 'ours', 'theirs' or 'both' (the GPT-2 shape)."""
    import torch
    import torch.nn.functional as F

    from minigpt_tui.core.runs.run_dir import RunDir

    folder = make_folder("gpt2", root)
    run_path = import_run(folder, root, "gpt2")
    train_cfg = RunDir(run_path).config().train
    out = {}
    if which in ("ours", "both"):
        ours, _ = load_ours(run_path)
        ours.train()
        opt = optimizer_for(ours, train_cfg)
        params = [p for p in ours.parameters() if p.requires_grad]

        def ours_step(x, y, model=ours, opt=opt, params=params):
            logits, _ = model(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()

        out["ours"] = ours_step
    if which in ("theirs", "both"):
        theirs = load_theirs(folder)
        theirs.train()
        opt = optimizer_for(theirs, train_cfg)  # the same AdamW: groups, hyperparameters, fused
        params = [p for p in theirs.parameters() if p.requires_grad]

        def theirs_step(x, y, model=theirs, opt=opt, params=params):
            loss = model(input_ids=x, labels=y, shift_labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()

        out["theirs"] = theirs_step
    return out, train_cfg


def batches(n: int, batch: int, seq: int):
    import torch

    g = torch.Generator().manual_seed(1234)
    data = [torch.randint(50257, (batch, seq + 1), generator=g) for _ in range(n)]
    return [(d[:, :-1].contiguous(), d[:, 1:].contiguous()) for d in data]


def finetune(args, root: Path) -> dict:
    steps, cfg = steppers(root, "both", args.batch, args.seq)
    data = batches(1 + args.rounds * args.steps_per_round, args.batch, args.seq)
    losses = {"ours": [], "theirs": []}
    for side in ("ours", "theirs"):  # warm-up step on batch 0
        losses[side].append(float(steps[side](*data[0])))
    rows = []
    for r in range(args.rounds):
        order = ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")
        chunk = data[1 + r * args.steps_per_round : 1 + (r + 1) * args.steps_per_round]
        took = {}
        for side in order:
            start = time.perf_counter()
            for x, y in chunk:
                losses[side].append(float(steps[side](x, y)))
            took[side] = (time.perf_counter() - start) / len(chunk)
        rows.append({"ours_s": took["ours"], "theirs_s": took["theirs"], "ratio": took["theirs"] / took["ours"]})
        print(f"  round {r}: ours {took['ours']:.2f} s/step, theirs {took['theirs']:.2f} s/step, "
              f"ratio {took['theirs'] / took['ours']:.3f}", flush=True)
    del steps
    memory = {side: finetune_memory(side, root, args) for side in ("ours", "theirs")}
    print()
    print(machine_line())
    print(f"Fine-tuning steps, GPT-2 124M shape, batch {args.batch} x {args.seq} tokens, float32, AdamW (fused, "
          f"lr {cfg.learning_rate:g}), grad clip {cfg.grad_clip:g}; {args.rounds} interleaved rounds of "
          f"{args.steps_per_round} step(s) after one warm-up step each; median (min-max)")
    col = lambda k, f="{:.2f}": spread([row[k] for row in rows], f)  # noqa: E731
    print(f"{'':<8} {'s/step':>18} {'peak RSS (VmHWM)':>18} {'over imports':>14}")
    for side in ("ours", "theirs"):
        m = memory[side]
        print(f"{side:<8} {col(side + '_s'):>18} {mib(m['hwm_kib']):>18} {mib(m['hwm_kib'] - m['base_kib']):>14}")
    print(f"ratio theirs/ours time (>1: ours faster): {col('ratio', '{:.3f}')}")
    diff = max(abs(a - b) for a, b in zip(losses["ours"], losses["theirs"]))
    print(f"losses step by step: ours {' '.join(f'{v:.4f}' for v in losses['ours'])}; "
          f"largest difference from theirs {diff:.2e}")
    return {"rows": rows, "memory": memory, "losses": losses}


def finetune_memory(side: str, root: Path, args) -> dict:
    """Peak RSS of `side` alone: a subprocess (this script's _finetune_memory)."""
    cmd = [sys.executable, __file__, "_finetune_memory", "--side", side, "--root", str(root),
           "--batch", str(args.batch), "--seq", str(args.seq), "--mem-steps", str(args.mem_steps),
           "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _finetune_memory(args) -> None:
    import torch  # noqa: F401  (imports first: the baseline)
    import transformers  # noqa: F401

    base = proc_status_kib("VmRSS")
    steps, _ = steppers(Path(args.root), args.side, args.batch, args.seq)
    for x, y in batches(args.mem_steps, args.batch, args.seq):
        steps[args.side](x, y)
    print(json.dumps({"base_kib": base, "hwm_kib": proc_status_kib("VmHWM")}))


# ---- a chat turn's memory ----------------------------------------------------------------------
def chatmem(args, root: Path) -> dict:
    folder = make_folder("smollm2", root)
    import_run(folder, root, "smollm2")
    cmd = [sys.executable, __file__, "_chatmem", "--root", str(root), "--reply", str(args.reply),
           "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    print()
    print(machine_line())
    print(f"One chat turn on the SmolLM2-135M shape (window 8192, 30 layers): a {res['user_tokens']}-token "
          f"user turn, a {res['reply_tokens']}-token greedy reply")
    print(f"RSS after loading {mib(res['rss_before_kib'])}; peak during the turn {mib(res['hwm_turn_kib'])} "
          f"(+{mib(res['hwm_turn_kib'] - res['rss_before_kib'])}); KV cache allocated {res['kv_bytes'] / 2**20:.1f} MiB "
          f"({res['kv_slots']} slots per layer), the chat's marks {res['marks_bytes'] / 2**20:.1f} MiB; "
          f"turn {res['turn_s']:.2f} s; code from {res['code']}")
    return res


def _chatmem(args) -> None:
    import torch

    from minigpt_tui.core.generation.chat import Chat
    from minigpt_tui.core.generation.chat_session import ChatSession
    from minigpt_tui.core.generation.chat_template import ChatTemplate
    from minigpt_tui.core.generation.sampling import Sampler, SamplingSettings

    model, tok = load_ours(Path(args.root) / "runs" / "smollm2")
    rss = proc_status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    sampler = Sampler(model, tok, SamplingSettings(temperature=0, max_new_tokens=args.reply))
    chat = Chat(ChatSession(sampler), ChatTemplate())
    start = time.perf_counter()
    reply = list(chat.say(USER_TURN))
    took = time.perf_counter() - start
    hwm = proc_status_kib("VmHWM")

    def nbytes(state) -> tuple[int, int]:
        layers = [kv for kv in getattr(state, "layers", []) if kv is not None]
        return sum(t.untyped_storage().nbytes() for kv in layers for t in kv), (layers[0][0].size(2) if layers else 0)

    kv, slots = nbytes(chat.session.state)
    marks = sum(nbytes(m.state)[0] for m in chat.marks.values())
    if chat.start_mark is not None:
        marks += nbytes(chat.start_mark.state)[0]
    user = chat.turns[0]
    print(json.dumps({"rss_before_kib": rss, "hwm_turn_kib": hwm, "kv_bytes": kv, "kv_slots": slots,
                      "marks_bytes": marks, "user_tokens": len(user.ids), "reply_tokens": len(reply),
                      "turn_s": took, "threads": torch.get_num_threads(),
                      "code": str(Path(sys.modules["minigpt_tui"].__file__).parent.parent)}))


# ---- main --------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["sampling", "finetune", "chatmem", "all", "_finetune_memory", "_chatmem"])
    p.add_argument("--models", default=",".join(SHAPES), help="sampling: gpt2, smollm2 or both (comma-separated)")
    p.add_argument("--tokens", type=int, default=128, help="sampling: new tokens per generation")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (finetune: default 4)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps-per-round", type=int, default=1)
    p.add_argument("--mem-steps", type=int, default=2, help="finetune: steps in each memory subprocess")
    p.add_argument("--reply", type=int, default=200, help="chatmem: reply tokens")
    p.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: every usable core)")
    p.add_argument("--root", default="", help="folder for the models and runs (default: a temporary one; "
                                              "give one to reuse them across invocations)")
    p.add_argument("--side", default="ours")
    args = p.parse_args(argv)
    import torch

    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
    args.threads = threads
    if args.what == "_finetune_memory":
        _finetune_memory(args)
        return 0
    if args.what == "_chatmem":
        _chatmem(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="pretrained-bench-") as tmp:
        root = Path(args.root) if args.root else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.what in ("sampling", "all"):
            sampling(args, root)
        if args.what in ("finetune", "all"):
            if args.what == "all" or "--rounds" not in (argv or sys.argv):
                args.rounds = min(args.rounds, 4)
            finetune(args, root)
        if args.what in ("chatmem", "all"):
            chatmem(args, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
