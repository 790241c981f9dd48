"""The two architectures an imported model may have, GPT-2 and Llama, mapped onto our Transformer.

Each maps a Hugging Face config.json onto a ModelConfig (refusing, in one sentence, any option
the mapping would not compute exactly) and the model's weights onto our parameter names:

GPT-2 (GPT2LMHeadModel)    learned positions, LayerNorm with bias, tanh GELU ("gelu_new"),
                           biases everywhere, the head tied to the embedding. Its Conv1D
                           layers keep weights as (in, out): transposed here.
Llama (LlamaForCausalLM)   RMSNorm, SwiGLU, rotary with the config's rope_theta, grouped-query
                           attention, a tied or separate head. SmolLM/SmolLM2, TinyLlama and
                           other small Llama-layout models are this.

Both layouts use rotary's half-split pairing (Llama) or no rotary at all (GPT-2), so the query
and key rows keep their order: our qkv projection is q, k and v stacked, our MLP's `up` is the
gate's rows then the up rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.errors import ImportModelError

SUPPORTED = "GPT-2 (model_type gpt2) and Llama-layout models (model_type llama: SmolLM, SmolLM2, TinyLlama)"


@dataclass(frozen=True)
class Architecture:
    name: str  # "gpt2" | "llama"
    model_config: Callable[[dict], ModelConfig]
    weights: Callable[[dict, ModelConfig, Callable[[str], torch.Tensor]], dict[str, torch.Tensor]]


def _need(hf: dict, *keys: str) -> int:
    """The first of `keys` the config has, as a positive integer."""
    for key in keys:
        value = hf.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ImportModelError(f"config.json's {key} must be a positive integer, got {value!r}.")
            return value
    raise ImportModelError(f"config.json has no {keys[0]}, which a {hf.get('model_type')} model needs.")


def _refuse_quantized(hf: dict) -> None:
    if hf.get("quantization_config"):
        method = hf["quantization_config"].get("quant_method", "quantized") if isinstance(
            hf["quantization_config"], dict) else "quantized"
        raise ImportModelError(f"This model's weights are quantized ({method}); only float32, float16 and "
                               "bfloat16 weights can be imported.")


# ---- GPT-2 -------------------------------------------------------------------------------------
def gpt2_config(hf: dict) -> ModelConfig:
    _refuse_quantized(hf)
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ImportModelError(f"This GPT-2 model uses the activation {activation!r}; "
                               "gelu_new, gelu_pytorch_tanh and gelu are supported.")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag):
            raise ImportModelError(f"This GPT-2 model sets {flag}, which is not supported.")
    if hf.get("scale_attn_weights") is False:
        raise ImportModelError("This GPT-2 model turns off the attention scale (scale_attn_weights), "
                               "which is not supported.")
    n_embd, n_head = _need(hf, "n_embd", "hidden_size"), _need(hf, "n_head", "num_attention_heads")
    if n_embd % n_head:
        raise ImportModelError(f"config.json's n_embd ({n_embd}) is not a multiple of n_head ({n_head}).")
    return ModelConfig(
        family="transformer", n_layer=_need(hf, "n_layer", "num_hidden_layers"), n_head=n_head, n_embd=n_embd,
        context_length=_need(hf, "n_positions", "n_ctx", "max_position_embeddings"), dropout=0.0,
        tie_weights=hf.get("tie_word_embeddings", True) is not False, bias=True,
        activation="gelu" if activation == "gelu" else "gelu_tanh", norm="layernorm",
        norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), positions="learned",
        mlp_hidden=hf.get("n_inner") or 0,
    )


def gpt2_weights(hf: dict, cfg: ModelConfig, get: Callable[[str], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from GPT-2's tensors (`get` by name, with or without "transformer.")."""
    t = lambda name: get(f"transformer.{name}")  # noqa: E731
    out = {"embed.weight": t("wte.weight"), "pos_embed.weight": t("wpe.weight"),
           "norm.weight": t("ln_f.weight"), "norm.bias": t("ln_f.bias")}
    for i in range(cfg.n_layer):
        h, b = f"h.{i}.", f"blocks.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[f"{b}{ours}.weight"], out[f"{b}{ours}.bias"] = t(f"{h}{theirs}.weight"), t(f"{h}{theirs}.bias")
        for ours, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                             ("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj")):
            out[f"{b}{ours}.weight"] = t(f"{h}{theirs}.weight").t()  # Conv1D: (in, out)
            out[f"{b}{ours}.bias"] = t(f"{h}{theirs}.bias")
    out["head.weight"] = out["embed.weight"] if cfg.tie_weights else get("lm_head.weight")
    return out


# ---- Llama -------------------------------------------------------------------------------------
def llama_config(hf: dict) -> ModelConfig:
    _refuse_quantized(hf)
    if hf.get("hidden_act", "silu") != "silu":
        raise ImportModelError(f"This Llama model uses the activation {hf.get('hidden_act')!r}; only silu is supported.")
    # transformers 4 writes rope_theta and rope_scaling; 5 writes rope_parameters (theta and type).
    rope = hf.get("rope_parameters") if isinstance(hf.get("rope_parameters"), dict) else {}
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = hf.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
    if scaling and (not isinstance(scaling, dict) or scaling.get("rope_type", scaling.get("type")) != "default"):
        kind = scaling.get("rope_type", scaling.get("type", "?")) if isinstance(scaling, dict) else scaling
        raise ImportModelError(f"This model scales its rotary positions ({kind}), which is not supported; "
                               "models without rope_scaling are (SmolLM2, TinyLlama).")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise ImportModelError(f"This Llama model has {flag} set, which is not supported.")
    n_embd, n_head = _need(hf, "hidden_size"), _need(hf, "num_attention_heads")
    n_kv = hf.get("num_key_value_heads") or n_head
    if n_embd % n_head or n_head % n_kv:
        raise ImportModelError(f"config.json's sizes do not fit together: hidden_size {n_embd}, "
                               f"num_attention_heads {n_head}, num_key_value_heads {n_kv}.")
    head_dim = hf.get("head_dim")
    if head_dim not in (None, n_embd // n_head):
        raise ImportModelError(f"This model's head_dim ({head_dim}) is not hidden_size / num_attention_heads, "
                               "which is not supported.")
    if (n_embd // n_head) % 2:
        raise ImportModelError("This model's head size is odd, which rotary positions cannot rotate.")
    return ModelConfig(
        family="transformer", n_layer=_need(hf, "num_hidden_layers"), n_head=n_head, n_embd=n_embd,
        context_length=_need(hf, "max_position_embeddings"), dropout=0.0,
        tie_weights=bool(hf.get("tie_word_embeddings", False)), bias=False, activation="swiglu",
        norm="rmsnorm", norm_eps=float(hf.get("rms_norm_eps", 1e-6)), positions="rotary",
        rope_theta=float(theta), n_kv_head=n_kv if n_kv != n_head else 0,
        mlp_hidden=_need(hf, "intermediate_size"),
    )


def llama_weights(hf: dict, cfg: ModelConfig, get: Callable[[str], torch.Tensor]) -> dict[str, torch.Tensor]:
    m = lambda name: get(f"model.{name}")  # noqa: E731
    out = {"embed.weight": m("embed_tokens.weight"), "norm.weight": m("norm.weight")}
    for i in range(cfg.n_layer):
        h, b = f"layers.{i}.", f"blocks.{i}."
        out[f"{b}norm1.weight"] = m(f"{h}input_layernorm.weight")
        out[f"{b}norm2.weight"] = m(f"{h}post_attention_layernorm.weight")
        out[f"{b}attn.qkv.weight"] = torch.cat([m(f"{h}self_attn.{p}_proj.weight") for p in "qkv"])
        out[f"{b}attn.proj.weight"] = m(f"{h}self_attn.o_proj.weight")
        out[f"{b}mlp.up.weight"] = torch.cat((m(f"{h}mlp.gate_proj.weight"), m(f"{h}mlp.up_proj.weight")))
        out[f"{b}mlp.down.weight"] = m(f"{h}mlp.down_proj.weight")
    out["head.weight"] = out["embed.weight"] if cfg.tie_weights else get("lm_head.weight")
    return out


ARCHITECTURES = {
    "gpt2": Architecture("gpt2", gpt2_config, gpt2_weights),
    "llama": Architecture("llama", llama_config, llama_weights),
}


def architecture_of(hf: dict) -> Architecture:
    model_type = hf.get("model_type")
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    what = f"model_type {model_type!r}" if model_type else "no model_type"
    archs = hf.get("architectures")
    if isinstance(archs, list) and archs:
        what += f" ({archs[0]})"
    raise ImportModelError(f"This model has {what}; the supported architectures are {SUPPORTED}.")


# ---- and back: a run of either layout as its Hugging Face architecture (core/export) ------------
def gpt2_export(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, tensors) of GPT2LMHeadModel: gpt2_weights run backwards, bit for bit."""
    out = {"transformer.wte.weight": state["embed.weight"], "transformer.wpe.weight": state["pos_embed.weight"],
           "transformer.ln_f.weight": state["norm.weight"], "transformer.ln_f.bias": state["norm.bias"]}
    for i in range(cfg.n_layer):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[f"{h}{theirs}.weight"], out[f"{h}{theirs}.bias"] = state[f"{b}{ours}.weight"], state[f"{b}{ours}.bias"]
        for ours, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                             ("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj")):
            out[f"{h}{theirs}.weight"] = state[f"{b}{ours}.weight"].t()  # Conv1D: (in, out)
            out[f"{h}{theirs}.bias"] = state[f"{b}{ours}.bias"]
    if not cfg.tie_weights:
        out["lm_head.weight"] = state["head.weight"]
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": cfg.n_embd,
              "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_positions": cfg.context_length,
              "n_ctx": cfg.context_length, "n_inner": cfg.mlp_hidden or None,
              "activation_function": "gelu_new" if cfg.activation == "gelu_tanh" else "gelu",
              "layer_norm_epsilon": cfg.norm_eps, "tie_word_embeddings": cfg.tie_weights,
              "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout}
    return config, out


def llama_export(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, tensors) of LlamaForCausalLM: llama_weights run backwards, bit for bit."""
    D = cfg.n_embd // cfg.n_head
    kv = (cfg.n_kv_head or cfg.n_head) * D
    out = {"model.embed_tokens.weight": state["embed.weight"], "model.norm.weight": state["norm.weight"]}
    for i in range(cfg.n_layer):
        h, b = f"model.layers.{i}.", f"blocks.{i}."
        out[f"{h}input_layernorm.weight"] = state[f"{b}norm1.weight"]
        out[f"{h}post_attention_layernorm.weight"] = state[f"{b}norm2.weight"]
        q, k, v = state[f"{b}attn.qkv.weight"].split((cfg.n_embd, kv, kv))
        out[f"{h}self_attn.q_proj.weight"], out[f"{h}self_attn.k_proj.weight"] = q, k
        out[f"{h}self_attn.v_proj.weight"] = v
        out[f"{h}self_attn.o_proj.weight"] = state[f"{b}attn.proj.weight"]
        gate, up = state[f"{b}mlp.up.weight"].chunk(2)
        out[f"{h}mlp.gate_proj.weight"], out[f"{h}mlp.up_proj.weight"] = gate, up
        out[f"{h}mlp.down_proj.weight"] = state[f"{b}mlp.down.weight"]
    if not cfg.tie_weights:
        out["lm_head.weight"] = state["head.weight"]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": cfg.n_embd,
              "intermediate_size": cfg.mlp_hidden, "num_hidden_layers": cfg.n_layer,
              "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_kv_head or cfg.n_head,
              "head_dim": D, "max_position_embeddings": cfg.context_length, "rms_norm_eps": cfg.norm_eps,
              "rope_theta": cfg.rope_theta, "rope_scaling": None,
              "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
              "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
              "tie_word_embeddings": cfg.tie_weights, "attention_dropout": cfg.dropout}
    return config, out


def is_gpt2_layout(cfg: ModelConfig) -> bool:
    return (cfg.family == "transformer" and cfg.positions == "learned" and cfg.norm == "layernorm" and cfg.bias
            and cfg.activation in ("gelu", "gelu_tanh") and not cfg.n_kv_head)


def is_llama_layout(cfg: ModelConfig) -> bool:
    return (cfg.family == "transformer" and cfg.positions == "rotary" and cfg.norm == "rmsnorm" and not cfg.bias
            and cfg.activation == "swiglu" and cfg.mlp_hidden > 0)
