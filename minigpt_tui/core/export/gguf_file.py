"""`--export RUN --format gguf --out FILE`: a GGUF file llama.cpp (and Ollama) runs, written with
the `gguf` package, llama.cpp's own writer.

The architecture is the one llama.cpp knows for the run's layout: "gpt2" for GPT-2, "llama" for
Llama (whose query and key rows llama.cpp wants in the interleaved rotary pairing: permuted as
llama.cpp's convert_hf_to_gguf.py does) and "gptneox" for our own Transformer (half-split rotary
like ours, sequential residual; its fused attn_qkv holds all queries, then all keys, then all
values, our own order rather than Hugging Face's per-head one, and its attention biases are
required: zeros where the run has none). The weights are the same tensors the Hugging Face
export writes (hf_folder.hf_layout), in f32, f16, bf16 or q8_0; norms and biases stay f32.
benchmarks/gguf_check.py runs the files in llama.cpp (llama-cpp-python) against our logits.

The vocabulary goes into GGUF metadata as llama.cpp's byte-level BPE ("gpt2" model: tokens,
merges, types, and the pre-tokenizer llama.cpp should split with). llama.cpp has no
character- or word-level vocabulary type, and an RNN no architecture there: those are refused
in one sentence, as is a SentencePiece-style vocabulary, which llama.cpp's own converter
handles from the --format hf export.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from minigpt_tui.core.errors import ExportError
from minigpt_tui.core.export.fit import gguf_vocabulary
from minigpt_tui.core.export.hf_folder import hf_layout
from minigpt_tui.core.runs.run_dir import LoadedRun, RunDir

GGUF_DTYPES = ("f32", "f16", "bf16", "q8_0")


def _vocabulary(run: LoadedRun) -> dict:
    """tokens, types, merges, pre-tokenizer and special ids for a byte-level BPE vocabulary."""
    tok = run.tokenizer
    spec, shape = gguf_vocabulary(tok)
    if shape in ("char", "word"):
        raise ExportError(f"Run {run.run_dir.name} has a {tok.kind}-level vocabulary, which llama.cpp cannot "
                          "express (it knows byte-level BPE and SentencePiece); export it with --format hf instead, "
                          "or train with data.tokenizer = \"bpe\".")
    if shape == "sentencepiece":
        raise ExportError(f"Run {run.run_dir.name}'s vocabulary is not byte-level BPE (a SentencePiece-style one), "
                          "which this export does not write to GGUF; export it with --format hf and convert that "
                          "folder with llama.cpp's convert_hf_to_gguf.py.")
    if shape == "split":
        raise ExportError(f"Run {run.run_dir.name}'s tokenizer splits text in a way this export cannot name for "
                          "llama.cpp; export it with --format hf and convert that folder with llama.cpp's "
                          "convert_hf_to_gguf.py.")
    pre_name = shape  # "gpt-2", or "smollm": digits one by one, then GPT-2's byte-level split (SmolLM, SmolLM2)
    model = spec.get("model", {})
    vocab: dict[str, int] = dict(model["vocab"])
    special = set()
    for added in spec.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["id"])
    size = tok.vocab_size
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [5] * size  # unused (llama.cpp's UNUSED) until a token fills the slot
    for text, i in vocab.items():
        if i < size:
            tokens[i], types[i] = text, 3 if i in special else 1  # control or normal
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {"tokens": tokens, "types": types, "merges": merges, "pre": pre_name,
            "bos": getattr(tok, "bos_id", None), "eos": _end_of_text(run),
            "add_bos": bool(getattr(tok, "bos_ids", ())),
            "chat_template": getattr(tok, "chat_template", None)}


def _end_of_text(run: LoadedRun) -> int | None:
    """The end-of-text id to write. Our own runs have none, and llama.cpp without one stops at its
    default id 11 (a comma, say): name a token the training text never held instead (a byte that
    never occurs), which the model all but never writes; None when every token occurred."""
    eos = getattr(run.tokenizer, "eos_id", None)
    if eos is None and run.unseen:
        return run.unseen[-1]
    return eos


def _llama_rotary_rows(w, n_head: int):
    """HF Llama's half-split rotary rows -> llama.cpp's interleaved pairing (convert_hf_to_gguf's permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _neox_fused_qkv(w, n_head: int):
    """HF GPT-NeoX's query_key_value (each head's q, k, v rows together) -> llama.cpp's attn_qkv (all
    queries, then all keys, then all values: our own layout), as convert_hf_to_gguf's GPTNeoXModel does."""
    import torch

    per_head = w.reshape(n_head, 3, w.shape[0] // n_head // 3, *w.shape[1:])
    return torch.cat([per_head[:, j].reshape(-1, *w.shape[1:]) for j in range(3)])


def _tensors(arch: str, cfg, hf: dict) -> dict:
    """GGUF tensor name -> torch tensor, from the Hugging Face export's tensors."""
    import torch

    out = {}
    if arch == "gpt2":
        t = lambda n: hf[f"transformer.{n}"]  # noqa: E731
        out.update({"token_embd.weight": t("wte.weight"), "position_embd.weight": t("wpe.weight"),
                    "output_norm.weight": t("ln_f.weight"), "output_norm.bias": t("ln_f.bias")})
        for i in range(cfg.n_layer):
            h, b = f"h.{i}.", f"blk.{i}."
            pairs = (("attn_norm", "ln_1", False), ("ffn_norm", "ln_2", False), ("attn_qkv", "attn.c_attn", True),
                     ("attn_output", "attn.c_proj", True), ("ffn_up", "mlp.c_fc", True), ("ffn_down", "mlp.c_proj", True))
            for ours, theirs, conv in pairs:
                out[f"{b}{ours}.weight"] = t(f"{h}{theirs}.weight").t() if conv else t(f"{h}{theirs}.weight")
                out[f"{b}{ours}.bias"] = t(f"{h}{theirs}.bias")
        out["output.weight"] = hf.get("lm_head.weight", t("wte.weight"))
    elif arch == "llama":
        m = lambda n: hf[f"model.{n}"]  # noqa: E731
        out.update({"token_embd.weight": m("embed_tokens.weight"), "output_norm.weight": m("norm.weight")})
        kv = cfg.n_kv_head or cfg.n_head
        for i in range(cfg.n_layer):
            h, b = f"layers.{i}.", f"blk.{i}."
            out[f"{b}attn_norm.weight"] = m(f"{h}input_layernorm.weight")
            out[f"{b}ffn_norm.weight"] = m(f"{h}post_attention_layernorm.weight")
            out[f"{b}attn_q.weight"] = _llama_rotary_rows(m(f"{h}self_attn.q_proj.weight"), cfg.n_head)
            out[f"{b}attn_k.weight"] = _llama_rotary_rows(m(f"{h}self_attn.k_proj.weight"), kv)
            out[f"{b}attn_v.weight"] = m(f"{h}self_attn.v_proj.weight")
            out[f"{b}attn_output.weight"] = m(f"{h}self_attn.o_proj.weight")
            for ours, theirs in (("ffn_gate", "gate_proj"), ("ffn_up", "up_proj"), ("ffn_down", "down_proj")):
                out[f"{b}{ours}.weight"] = m(f"{h}mlp.{theirs}.weight")
        if "lm_head.weight" in hf:
            out["output.weight"] = hf["lm_head.weight"]
    else:  # gptneox
        n = lambda name: hf[f"gpt_neox.{name}"]  # noqa: E731
        out.update({"token_embd.weight": n("embed_in.weight"), "output_norm.weight": n("final_layer_norm.weight"),
                    "output_norm.bias": n("final_layer_norm.bias")})
        C = cfg.n_embd
        for i in range(cfg.n_layer):
            h, b = f"layers.{i}.", f"blk.{i}."
            for ours, theirs in (("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm"),
                                 ("attn_qkv", "attention.query_key_value"), ("attn_output", "attention.dense"),
                                 ("ffn_up", "mlp.dense_h_to_4h"), ("ffn_down", "mlp.dense_4h_to_h")):
                for part in ("weight", "bias"):
                    if f"gpt_neox.{h}{theirs}.{part}" in hf:
                        out[f"{b}{ours}.{part}"] = n(f"{h}{theirs}.{part}")
            qkv = f"{b}attn_qkv."
            out[qkv + "weight"] = _neox_fused_qkv(out[qkv + "weight"], cfg.n_head)
            out[qkv + "bias"] = _neox_fused_qkv(out[qkv + "bias"], cfg.n_head) if qkv + "bias" in out \
                else torch.zeros(3 * C)  # llama.cpp's gptneox requires the attention biases
            out.setdefault(f"{b}attn_output.bias", torch.zeros(C))
        out["output.weight"] = hf.get("embed_out.weight", n("embed_in.weight"))
    return out


def export_gguf(run_dir: RunDir, out: Path, checkpoint: str = "best", dtype: str = "f16") -> tuple[str, Path, bool]:
    """Write the GGUF file (through FILE.partial, renamed when complete); (llama.cpp architecture, path,
    whether it names an end-of-text token)."""
    import gguf
    import numpy as np

    run = run_dir.load(checkpoint)
    name, _, hf = hf_layout(run)  # (an RNN is refused here: no architecture in llama.cpp either)
    vocab = _vocabulary(run)
    cfg = run.config.model
    arch = {"GPT-2": "gpt2", "Llama": "llama", "GPT-NeoX": "gptneox"}[name]
    out = Path(out).expanduser()
    if out.exists():
        raise ExportError(f"{out} already exists; give a new --out path.")
    partial = out.with_name(out.name + ".partial")
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[dtype]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        w = gguf.GGUFWriter(str(partial), arch)
        w.add_name(run_dir.name)
        w.add_context_length(cfg.context_length)
        w.add_embedding_length(cfg.n_embd)
        w.add_block_count(cfg.n_layer)
        w.add_feed_forward_length(cfg.mlp_hidden or 4 * cfg.n_embd)
        w.add_head_count(cfg.n_head)
        w.add_file_type(file_type)
        if arch == "llama":
            w.add_head_count_kv(cfg.n_kv_head or cfg.n_head)
            w.add_layer_norm_rms_eps(cfg.norm_eps)
        else:
            w.add_layer_norm_eps(cfg.norm_eps)
        if arch != "gpt2":
            w.add_rope_dimension_count(cfg.n_embd // cfg.n_head)
            w.add_rope_freq_base(cfg.rope_theta)
        if arch == "gptneox":
            w.add_parallel_residual(False)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(vocab["pre"])
        w.add_token_list(vocab["tokens"])
        w.add_token_types(vocab["types"])
        w.add_token_merges(vocab["merges"])
        for key, add in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id)):
            if vocab[key] is not None:
                add(vocab[key])
        w.add_add_bos_token(vocab["add_bos"])
        if vocab["chat_template"]:
            w.add_chat_template(vocab["chat_template"])
        for tname, tensor in _tensors(arch, cfg, hf).items():
            data = tensor.float().contiguous().numpy()
            if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:  # norms and biases: f32
                w.add_tensor(tname, data)
            elif qtype == gguf.GGMLQuantizationType.F16:
                w.add_tensor(tname, data.astype(np.float16))
            elif qtype == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32:  # q8_0 packs rows by 32
                w.add_tensor(tname, data.astype(np.float16))
            else:
                w.add_tensor(tname, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(partial, out)
    except ExportError:
        raise
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise ExportError(f"Cannot write {out} ({err.strerror or err}).") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return arch, out, vocab["eos"] is not None


def run_instructions(path: Path, run_name: str, has_end: bool = True) -> str:
    """How to run the file: llama.cpp's CLI and server, and an Ollama Modelfile. Without an
    end-of-text token llama.cpp would stop at its default one: --ignore-eos."""
    p = shlex.quote(str(path))
    return "\n".join([
        "Run it with llama.cpp:",
        f"  llama-cli -m {p} -p 'Once upon a time' -n 100" + ("" if has_end else " --ignore-eos"),
        f"  llama-server -m {p}        # then open http://127.0.0.1:8080",
        "Or with Ollama: save these two lines as Modelfile,",
        f"  FROM {path}",
        "  PARAMETER temperature 0.8",
        f"then: ollama create {run_name.lower()} -f Modelfile && ollama run {run_name.lower()}",
    ])
