"""Our own Transformer as GPT-NeoX (GPTNeoXForCausalLM), the architecture transformers and
llama.cpp both know whose numerics are ours: pre-norm LayerNorm, rotary positions in the same
half-split pairing over the whole head (partial_rotary_factor 1), a GELU MLP, and, with
use_parallel_residual off, the same sequential residual x + attn(ln1(x)), then x + mlp(ln2(x)).

What differs is written around: NeoX's LayerNorms and MLP always have biases (written as zeros
where our run has none), and its fused query_key_value holds each head's q, k and v rows
together (ours holds all queries, then all keys, then all values): the rows are reordered.
Past the context window transformers attends to everything while we slide; the model card says
so, and max_position_embeddings is the context length.
"""

from __future__ import annotations

import torch

from minigpt_tui.core.config import ModelConfig


def is_neox_layout(cfg: ModelConfig) -> bool:
    return (cfg.family == "transformer" and cfg.positions == "rotary" and cfg.norm == "layernorm"
            and cfg.activation in ("gelu", "gelu_tanh") and not cfg.n_kv_head)


def qkv_rows(cfg: ModelConfig) -> torch.Tensor:
    """Index of our qkv rows in NeoX's order: per head, its query, key and value rows."""
    C, H = cfg.n_embd, cfg.n_head
    D = C // H
    r = torch.arange(D)
    return torch.cat([torch.cat((h * D + r, C + h * D + r, 2 * C + h * D + r)) for h in range(H)])


def neox_export(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, tensors) of GPTNeoXForCausalLM with our weights."""
    C = cfg.n_embd
    hidden = cfg.mlp_hidden or 4 * C

    def bias(name: str, size: int) -> torch.Tensor:
        return state[name] if name in state else torch.zeros(size, dtype=state["embed.weight"].dtype)

    rows = qkv_rows(cfg)
    out = {"gpt_neox.embed_in.weight": state["embed.weight"],
           "gpt_neox.final_layer_norm.weight": state["norm.weight"],
           "gpt_neox.final_layer_norm.bias": bias("norm.bias", C)}
    for i in range(cfg.n_layer):
        h, b = f"gpt_neox.layers.{i}.", f"blocks.{i}."
        for ours, theirs in (("norm1", "input_layernorm"), ("norm2", "post_attention_layernorm")):
            out[f"{h}{theirs}.weight"], out[f"{h}{theirs}.bias"] = state[f"{b}{ours}.weight"], bias(f"{b}{ours}.bias", C)
        out[f"{h}attention.query_key_value.weight"] = state[f"{b}attn.qkv.weight"][rows]
        out[f"{h}attention.dense.weight"] = state[f"{b}attn.proj.weight"]
        if cfg.bias:
            out[f"{h}attention.query_key_value.bias"] = state[f"{b}attn.qkv.bias"][rows]
            out[f"{h}attention.dense.bias"] = state[f"{b}attn.proj.bias"]
        out[f"{h}mlp.dense_h_to_4h.weight"] = state[f"{b}mlp.up.weight"]
        out[f"{h}mlp.dense_h_to_4h.bias"] = bias(f"{b}mlp.up.bias", hidden)
        out[f"{h}mlp.dense_4h_to_h.weight"] = state[f"{b}mlp.down.weight"]
        out[f"{h}mlp.dense_4h_to_h.bias"] = bias(f"{b}mlp.down.bias", C)
    if not cfg.tie_weights:
        out["embed_out.weight"] = state["head.weight"]
    theta = cfg.rope_theta
    config = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": C,
              "num_attention_heads": cfg.n_head, "num_hidden_layers": cfg.n_layer, "intermediate_size": hidden,
              # gelu_pytorch_tanh is F.gelu(approximate="tanh"), exactly what gelu_tanh runs compute
              "hidden_act": "gelu_pytorch_tanh" if cfg.activation == "gelu_tanh" else "gelu",
              "max_position_embeddings": cfg.context_length, "layer_norm_eps": cfg.norm_eps,
              "use_parallel_residual": False, "attention_bias": cfg.bias, "tie_word_embeddings": cfg.tie_weights,
              # transformers 4 reads rotary_pct and rotary_emb_base, 5 reads rope_parameters
              "rotary_pct": 1.0, "rotary_emb_base": theta, "rope_scaling": None,
              "rope_parameters": {"rope_type": "default", "rope_theta": theta, "partial_rotary_factor": 1.0},
              "attention_dropout": cfg.dropout, "hidden_dropout": cfg.dropout}
    return config, out
