"""The weights of a Transformer arranged for decoding one token at a time (transformer_decode.py,
steady_decode.py): each matrix in the layout a row of activations is multiplied by fastest, the
query and key rows in the interleaved order the rotation takes, the attention's scale folded in.

Shape names as in transformer.py: C width, H heads, D head size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F

from minigpt_tui.core.models.kv_cache import interleave_order

if TYPE_CHECKING:
    from minigpt_tui.core.models.transformer import Transformer


class DecodePlan(NamedTuple):
    """One block's weights arranged for decoding. Every matrix is stored (in, out), the layout
    torch.mm and torch.addmm take for a row of activations: for a small model a contiguous
    copy, which MKL multiplies by one row 1.6x faster than the (out, in) weight F.linear reads
    (16 matrix-vector products of the shakespeare-char shape: 192 against 309 µs); for a large
    one (SMALL_MODEL parameters and up) a transposed view, so that its weights are not held
    twice. The qkv rows (and bias) have each query and key head in interleaved order, and the
    query rows are multiplied by the attention's scale D^-0.5 (rotation is linear, so the
    scores come out scaled and attention multiplies by nothing)."""

    norm1_weight: torch.Tensor
    norm1_bias: torch.Tensor | None
    qkv_weight_t: torch.Tensor  # (C, (H + 2 Hkv) D)
    qkv_bias: torch.Tensor | None
    proj_weight_t: torch.Tensor  # (C, C)
    proj_bias: torch.Tensor | None
    norm2_weight: torch.Tensor
    norm2_bias: torch.Tensor | None
    up_weight_t: torch.Tensor  # (C, 4C), or (C, 8C) for SwiGLU
    up_bias: torch.Tensor | None
    down_weight_t: torch.Tensor  # (4C, C)
    down_bias: torch.Tensor | None
    activation: str  # F.gelu's `approximate` ("none" or "tanh"), or "swiglu" (transformer.gelu_approximation)


class DecodeWeights(NamedTuple):
    """What a cache decodes with: each block's DecodePlan and the head, (C, V); `small`: under
    SMALL_MODEL parameters (copies of the weights, and the steady path's views)."""

    blocks: list[DecodePlan]
    head_t: torch.Tensor
    small: bool


SMALL_MODEL = 20_000_000  # parameters: below this the plan keeps (in, out) copies of the weights


def decode_plan(model: Transformer) -> DecodeWeights:
    """The tensors `decode` and `extend` need (see DecodePlan)."""
    H, Hkv, D = heads(model)
    order = interleave_order(D).to(model.embed.weight.device)
    # Query and key rows head by head in interleaved order; value rows as they are.
    rows = torch.cat([h * D + order for h in range(H + Hkv)]
                     + [torch.arange((H + Hkv) * D, (H + 2 * Hkv) * D, device=order.device)])
    scale = torch.ones(len(rows), device=order.device)
    scale[: H * D] = D ** -0.5
    copy = sum(p.numel() for p in model.parameters()) < SMALL_MODEL

    def t(weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().t().contiguous() if copy else weight.detach().t()

    blocks = []
    for block in model.blocks:
        attn, mlp, n1, n2 = block.attn, block.mlp, block.norm1, block.norm2
        qkv_bias = attn.qkv.bias
        blocks.append(DecodePlan(
            norm1_weight=n1.weight, norm1_bias=getattr(n1, "bias", None),
            qkv_weight_t=(attn.qkv.weight.detach()[rows] * scale[:, None].to(attn.qkv.weight.dtype)).t().contiguous(),
            qkv_bias=(qkv_bias.detach()[rows] * scale.to(qkv_bias.dtype)) if qkv_bias is not None else None,
            proj_weight_t=t(attn.proj.weight), proj_bias=attn.proj.bias,
            norm2_weight=n2.weight, norm2_bias=getattr(n2, "bias", None),
            up_weight_t=t(mlp.up.weight), up_bias=mlp.up.bias,
            down_weight_t=t(mlp.down.weight), down_bias=mlp.down.bias, activation=mlp.approximate,
        ))
    return DecodeWeights(blocks, t(model.head.weight), copy)


def heads(model: Transformer) -> tuple[int, int, int]:
    """Query heads H, key/value heads Hkv, head size D."""
    cfg = model.config
    return cfg.n_head, cfg.n_kv_head or cfg.n_head, cfg.n_embd // cfg.n_head


def mlp_activation(h: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "swiglu":
        gate, up = h.chunk(2, dim=-1)
        return F.silu(gate) * up
    return F.gelu(h, approximate=activation)


def norm_function(model: Transformer):
    """norm(x, weight, bias): the model's LayerNorm or RMSNorm as one function call."""
    C, eps = model.config.n_embd, model.config.norm_eps
    if model.config.norm == "rmsnorm":
        return lambda x, weight, bias: F.rms_norm(x, (C,), weight, eps)
    return lambda x, weight, bias: torch.layer_norm(x, (C,), weight, bias, eps)
