"""GGUF check: do the files `minigpt-tui --export RUN --format gguf` writes run in llama.cpp with
minigpt-tui's numbers? (Run by hand; it needs llama-cpp-python, which CI does not install.)

    pip install llama-cpp-python gguf transformers     # builds llama.cpp from source
    python benchmarks/gguf_check.py [--steps 150] [--keep DIR]

For each architecture the export writes, a small model is made, exported to GGUF in f32 through
the CLI and loaded with llama_cpp.Llama:

  gptneox       our own Transformer (data.tokenizer = "bpe"), activation "gelu" (erf) and
                "gelu_tanh" (llama.cpp's GELU is the tanh approximation), with and without biases
  gpt2          imported from a random transformers GPT2LMHeadModel (learned positions)
  llama         imported from a random LlamaForCausalLM with grouped-query attention

and compared with minigpt-tui: llama.cpp's tokenization of a sample text (without and with BOS),
the logits at every position of a prompt of our token ids (max abs difference), and 20 greedy
tokens. Prints the versions and llama.cpp's system info (the CPU features it was built for), a
table, the machine line under it (benchmarks/machine.py: "Machine class: CPU without native bf16
(AVX2). CPU: ... features avx2 fma ...; torch ..., 2 threads; load average ...") and one JSON line
(machine.info()'s dict under "machine"); exits 1 when something does not match (tokens differ, or
logits past --atol).

Measured (llama-cpp-python 0.3.36, AVX2 CPU, f32 files, f32 KV cache): max |logit difference|
1.7e-5 for llama; 0.8-2.6e-3 for gptneox and gpt2, all of it llama.cpp's CPU GELU, a table
indexed by the input rounded to f16 (emulating that in PyTorch leaves 0.8-4.6e-4), the same
for "gelu" and "gelu_tanh"; tokenization, argmax at every position and 20 greedy ids equal.
llama.cpp's default f16 KV cache adds up to 1.4e-2 (llama). A run with no EOS token (our own
BPE) gets llama.cpp's default EOS for the "gpt2" vocabulary, id 11: llama-cli stops there
unless given --ignore-eos (GGUF cannot say "no EOS").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import machine  # noqa: E402  (benchmarks/machine.py: this script's folder is on sys.path)
import numpy as np  # noqa: E402
import torch  # noqa: E402

SAMPLE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
          "You are all resolved rather to die than to famish? 1234 zebra\tquux  é!")
GENERATE = 20


# ---- the models --------------------------------------------------------------------------------
def train_ours(corpus: Path, root: Path, name: str, steps: int, **model) -> Path:
    from kit import tiny_config
    from minigpt_tui.core.training.trainer import Trainer

    config = tiny_config(corpus, max_steps=steps, sample_tokens=0, eval_interval=steps,
                         model={"n_layer": 2, "n_head": 2, "n_embd": 64, "context_length": 64, **model})
    config.data.tokenizer, config.data.vocab_size = "bpe", 300
    trainer = Trainer(config, emit=lambda e: None, recipe_name=name, runs_root=root)
    trainer.run()
    return Path(trainer.run_dir)


def gpt2_folder(folder: Path) -> Path:
    from pretrained_kit import byte_level_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = byte_level_tokenizer(["<|endoftext|>"])
    tokenizer.bos_token = tokenizer.eos_token = "<|endoftext|>"
    torch.manual_seed(0)
    # heads of 32 (llama.cpp's kernels know the usual head sizes); a wider init than GPT-2's 0.02,
    # so that the next-token distribution is peaked and greedy ids are not decided by 1e-6
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=2, n_head=2,
                        initializer_range=0.15, bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def llama_folder(folder: Path) -> Path:
    from pretrained_kit import CHATML, byte_level_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_level_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer.bos_token, tokenizer.eos_token = "<|im_start|>", "<|im_end|>"
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         rope_theta=5000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, initializer_range=0.15,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # random norms, so that a norm mapped wrongly shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---- the comparison ----------------------------------------------------------------------------
def ours_greedy(model, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out]))[0][0, -1].argmax()))
    return out[len(ids):]


def theirs_greedy(llm, ids: list[int], n: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(tok)
        llm.eval([tok])
    return out


def check(label: str, run_path: Path, out: Path) -> dict:
    import llama_cpp

    from minigpt_tui.cli import main
    from minigpt_tui.core.runs.run_dir import RunDir

    assert main(["--export", str(run_path), "--format", "gguf", "--out", str(out), "--dtype", "f32"]) == 0
    run = RunDir(run_path).load()
    cfg = run.config.model
    tok = run.tokenizer
    ids = tok.encode(SAMPLE)
    n_ctx = cfg.context_length  # prompt + generation stay inside our window (we slide past it, llama.cpp not)
    prompt = ids[: n_ctx - GENERATE - 1]
    # an f32 key/value cache, so that the file's f32 numbers are what is compared (llama.cpp's
    # default cache is f16: the column "f16 KV" shows what that adds)
    llm = llama_cpp.Llama(model_path=str(out), logits_all=True, n_ctx=n_ctx, n_batch=n_ctx, n_threads=2,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, verbose=False)
    arch = llm.metadata.get("general.architecture")
    theirs_ids = llm.tokenize(SAMPLE.encode(), add_bos=False, special=False)
    theirs_bos = llm.tokenize(SAMPLE.encode(), add_bos=True, special=False)
    detok_ok = llm.detokenize(ids).decode("utf-8", errors="replace") == tok.decode(ids)

    llm.reset()
    llm.eval(prompt)
    theirs_logits = np.array(llm.scores[: len(prompt)], dtype=np.float64)
    with torch.no_grad():
        ours_logits = run.model(torch.tensor([prompt]))[0][0].double().numpy()
    diff = np.abs(theirs_logits - ours_logits)
    scale = float(np.abs(ours_logits).max())
    argmax_same = float((theirs_logits.argmax(-1) == ours_logits.argmax(-1)).mean())

    g_ours, g_theirs = ours_greedy(run.model, prompt, GENERATE), theirs_greedy(llm, prompt, GENERATE)
    same_prefix = next((i for i, (a, b) in enumerate(zip(g_ours, g_theirs)) if a != b), GENERATE)
    eos = llm.token_eos()
    eos_text = llm.detokenize([eos], special=True).decode("utf-8", "replace") if eos >= 0 else None
    llm.close()
    f16 = llama_cpp.Llama(model_path=str(out), logits_all=True, n_ctx=n_ctx, n_batch=n_ctx, n_threads=2,
                          verbose=False)
    f16.eval(prompt)
    f16_diff = float(np.abs(np.array(f16.scores[: len(prompt)], dtype=np.float64) - ours_logits).max())
    f16.close()
    return {"case": label, "arch": arch, "n_vocab": tok.vocab_size, "prompt_tokens": len(prompt),
            "tokenize_equal": theirs_ids == ids, "bos_equal": theirs_bos == list(tok.bos_ids) + ids,
            "bos_ids": list(tok.bos_ids), "detokenize_equal": detok_ok,
            "max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean()),
            "max_abs_logit": scale, "max_abs_logit_diff_f16_kv": f16_diff,
            "eos_ours": getattr(tok, "eos_id", None), "eos_llama_cpp": eos, "eos_llama_cpp_text": eos_text, "argmax_agree": argmax_same,
            "greedy_equal": g_ours == g_theirs, "greedy_agree_prefix": same_prefix,
            "greedy_ours": g_ours, "greedy_theirs": g_theirs,
            "tokens_ours": ids[:12], "tokens_theirs": theirs_ids[:12]}


def versions() -> dict:
    from importlib.metadata import version

    import llama_cpp
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "gguf": version("gguf"), "llama_cpp_python": llama_cpp.__version__}
    try:
        out["llama_cpp_system_info"] = llama_cpp.llama_print_system_info().decode().strip()
    except Exception as err:  # pragma: no cover - an older binding
        out["llama_cpp_system_info"] = f"({err})"
    return out


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150, help="training steps of our own runs")
    ap.add_argument("--atol", type=float, default=5e-3, help="largest max-abs logit difference that passes")
    ap.add_argument("--keep", type=Path, help="work in this folder (kept) instead of a temporary one")
    args = ap.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="gguf-check-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MINIGPT_TUI_HOME"] = str(work / "home")
    torch.manual_seed(0)
    torch.set_num_threads(2)

    from kit import write_corpus
    from minigpt_tui.cli import main
    from pretrained_kit import TEXT

    info = versions()
    print(f"python {info['python']}  torch {info['torch']}  transformers {info['transformers']}  "
          f"gguf {info['gguf']}  llama-cpp-python {info['llama_cpp_python']}")
    print(f"llama.cpp system info: {info['llama_cpp_system_info']}")

    corpus = write_corpus(work, TEXT * 4, "corpus.txt")
    runs = work / "home" / "runs"
    cases = []
    for label, model in (("gptneox gelu", {"activation": "gelu"}),
                         ("gptneox gelu_tanh", {"activation": "gelu_tanh"}),
                         ("gptneox gelu_tanh+bias", {"activation": "gelu_tanh", "bias": True}),
                         ("gptneox gelu untied", {"activation": "gelu", "tie_weights": False})):
        cases.append((label, train_ours(corpus, runs, label.replace(" ", "-").replace("+", "-"), args.steps, **model)))
    for label, make in (("gpt2 (imported)", gpt2_folder), ("llama GQA (imported)", llama_folder)):
        name = label.split()[0] + "-imported"
        assert main(["--import", str(make(work / f"hf-{name}")), "--name", name]) == 0
        cases.append((label, runs / name))

    results = []
    for i, (label, path) in enumerate(cases):
        r = check(label, path, work / f"{i}-{label.split()[0]}.gguf")
        results.append(r)
        print(f"  {label}: ours {r['greedy_ours']}\n  {' ' * len(label)}  llama.cpp {r['greedy_theirs']}", flush=True)

    print(f"\n{'case':24} {'arch':8} {'max|dlogit|':>11} {'mean':>9} {'f16 KV':>9} {'max|logit|':>10} {'argmax':>7} "
          f"{'tokenize':>8} {'+BOS':>5} {'detok':>5} {'greedy 20':>9}  EOS ours / llama.cpp")
    ok = True
    for r in results:
        good = (r["tokenize_equal"] and r["bos_equal"] and r["detokenize_equal"] and r["greedy_equal"]
                and r["max_abs_logit_diff"] <= args.atol)
        ok &= good
        print(f"{r['case']:24} {r['arch']:8} {r['max_abs_logit_diff']:11.2e} {r['mean_abs_logit_diff']:9.1e} "
              f"{r['max_abs_logit_diff_f16_kv']:9.1e} {r['max_abs_logit']:10.2f} {r['argmax_agree']:7.0%} "
              f"{str(r['tokenize_equal']):>8} {str(r['bos_equal']):>5} {str(r['detokenize_equal']):>5} "
              f"{r['greedy_agree_prefix']:>6}/{GENERATE}  {r['eos_ours']} / {r['eos_llama_cpp']} "
              f"{r['eos_llama_cpp_text']!r}{'' if good else '  <-- MISMATCH'}")
    mach = machine.info("cpu")
    print(machine.summary(mach))
    print(json.dumps({"versions": info, "machine": mach, "results": [{k: v for k, v in r.items() if not k.startswith(("greedy_o", "greedy_t", "tokens_"))}
                                                    for r in results], "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_())
