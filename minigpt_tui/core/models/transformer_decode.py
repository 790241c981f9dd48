"""Decoding one token at a time with a Transformer's key/value cache: the sampler's hot path.

transformer.py defines the network; this module runs the same arithmetic for a
single new token per step against a ring buffer of past keys and values (kv_cache.py; see
transformer.py's docstring for why a ring works with rotary positions). It is
written flat on torch calls because at one token per step the cost is the
number of calls, not the flops:

* the weights are gathered once per cache into a DecodePlan per block
  (decode_plan.py), each matrix in the (in, out) layout a row of activations
  is multiplied by fastest, the attention's scale folded into the query rows;
* one token of one sequence into buffers of all W slots, which is how a small
  model's tokens are decoded, goes through a SteadyStep (steady_decode.py):
  the same calls with everything around them prepared once per cache; where a
  C compiler built the sampler's kernels (core/native.py), through a NativeStep
  (native_decode.py): the same arithmetic in one native call;
* queries and keys of all heads are rotated together, in place, by one complex
  multiplication. For that each head's dimensions are kept in interleaved
  order, (x1_0, x2_0, x1_1, x2_1, ...) instead of the network's half split
  (x1_0, ..., x1_{D/2-1}, x2_0, ...): the qkv weight rows are permuted to
  produce them that way, and the cached keys are stored that way. Queries and
  keys are permuted alike, so every dot product, and so the attention, is
  unchanged;
* residual adds fold into addmm where that is exact;
* one query's attention is two matmuls and a softmax (scaled_dot_product_attention
  costs a fixed ~50 µs a call on a CPU, more than its arithmetic at this size),
  and oneDNN is off while a token is decoded (see without_onednn).

Shape names as in transformer.py: B batch, C width, H heads, D head size, W window.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from minigpt_tui.core.models.decode_plan import DecodePlan, decode_plan, heads, mlp_activation, norm_function
from minigpt_tui.core.models.kv_cache import KVCache
from minigpt_tui.core.models.native_decode import steady_step

if TYPE_CHECKING:
    from minigpt_tui.core.models.transformer import Transformer


def _project(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight_t (+ bias) for x (..., C) and an (in, out) weight (mm for a row: matmul is a
    call more)."""
    if x.dim() == 2:
        return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)
    y = torch.matmul(x, weight_t)
    return y if bias is None else y + bias


def _add_projection(x: torch.Tensor, y: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None):
    """x + y @ weight_t (+ bias) for rows x, y: the residual add folded into addmm where there is no
    bias (a call fewer)."""
    return torch.addmm(x, y, weight_t) if bias is None else x + torch.addmm(bias, y, weight_t)


def _add_mlp(x: torch.Tensor, p: DecodePlan, norm, fused: bool = True) -> torch.Tensor:
    """x + down(act(up(norm(x)))), one block's MLP with its residual. `fused` (rows of float32, no
    autocast) folds the residual into the down projection; otherwise x + the projection, which also
    takes (B, T, C) and keeps the residual stream in float32 under autocast."""
    h = mlp_activation(_project(norm(x, p.norm2_weight, p.norm2_bias), p.up_weight_t, p.up_bias), p.activation)
    return _add_projection(x, h, p.down_weight_t, p.down_bias) if fused else x + _project(h, p.down_weight_t, p.down_bias)


def _embed(model: Transformer, idx: torch.Tensor | int, pos: int, T: int = 1) -> torch.Tensor:
    """Token embeddings (plus the position table's rows pos..pos+T-1 with learned positions)."""
    if isinstance(idx, int):
        x = model.embed.weight[idx : idx + 1]  # (1, C)
    else:
        x = F.embedding(idx, model.embed.weight)  # (B, C) or (B, T, C)
    if model.learned_positions:
        x = x + model.pos_embed.weight[pos : pos + T]
    return x


def without_onednn(step):
    """Run `step` with PyTorch's oneDNN (mkldnn) kernels off. On a CPU, F.gelu goes through oneDNN,
    which costs a fixed ~10 µs a call whatever the size (12 µs for 8 values, 13 for 2,048; its own
    kernel 2.3 µs for the MLP's 512): at one token per step that is most of a GELU's time, and the
    other calls of a step do not use oneDNN in float32 (matmuls are MKL's). A decoded token of the
    shakespeare-char transformer: 0.75x the time (815 against 1,059 µs, median of 7 alternations;
    the GRU, LSTM and CNN steps gain nothing, so theirs keep it). The setting is global: restored
    when the step returns."""

    @functools.wraps(step)
    def run(*args, **kwargs):
        mkldnn = torch.backends.mkldnn  # (its flags() context also resets TF32 and precision settings)
        was, mkldnn.enabled = mkldnn.enabled, False
        try:
            return step(*args, **kwargs)
        finally:
            mkldnn.enabled = was

    return run


def decode(model: Transformer, idx: torch.Tensor | int, cache: KVCache) -> torch.Tensor:
    """One new token per sequence (idx (B,), or an int for B = 1) after a filled cache -> logits (B, V).

    The same arithmetic as the blocks' forward (dropout off: a cache is an
    inference tool); advances the cache by one token. A token of one sequence
    into buffers of all W slots (from the prompt on, for windows up to
    KVCache.MIN_SLOTS) goes through the cache's SteadyStep (steady_decode.py),
    without autograd: the same calls on the same numbers, prepared once per cache
    (or its NativeStep, native_decode.py: the same to float rounding, in one C call).
    """
    step = cache.steady
    if step is not None and isinstance(idx, int) and step.ready():
        return step(idx, cache)
    return _decode(model, idx, cache)


@without_onednn
def _decode(model: Transformer, idx: torch.Tensor | int, cache: KVCache) -> torch.Tensor:
    """decode's general path, which makes the cache's steady step once one can decode."""
    C, W = model.config.n_embd, cache.window
    H, Hkv, D = heads(model)
    QK = (H + Hkv) * D  # the query and key rows of qkv
    if cache.plan is None:
        cache.plan = decode_plan(model)
    if isinstance(idx, int) and _steady_ready(cache):
        cache.steady = steady_step(model, cache)
        return cache.steady(idx, cache)
    if cache.slots <= cache.count < W:  # the buffers are full but not yet W slots: grow first
        cache.reserve(1)
    x = _embed(model, idx, cache.pos)  # (B, C)
    B = x.size(0)
    slot = cache.count % W
    filled = min(cache.count + 1, W)
    rot = model.rotary.rotation(cache.pos) if not model.learned_positions else None  # (D/2,) complex
    # Under autocast, matmuls return reduced precision: keep the residual stream in
    # float32 as the blocks' forward does (x + linear(...)) instead of fusing into addmm.
    fused = not torch.is_autocast_enabled(x.device.type)
    norm = norm_function(model)
    for p, (keys, values) in zip(cache.plan.blocks, cache.layers):
        # attention: x + proj(attend(rotate(q), ring of rotated k, v))
        qkv = _project(norm(x, p.norm1_weight, p.norm1_bias), p.qkv_weight_t, p.qkv_bias)  # (B, (H + 2 Hkv) D)
        qk = qkv[:, :QK]  # queries then keys, each head's dimensions in (x1, x2) pairs
        reduced = qkv.dtype != torch.float32
        if reduced:  # rotate in float32 (the keys are kept in float32)
            qk = qk.float()
        if rot is not None:  # in place: qk is qkv's own memory, or the float32 copy
            torch.view_as_complex(qk.view(B, H + Hkv, D // 2, 2)).mul_(rot)
        keys.narrow(2, slot, 1).copy_(qk[:, H * D :].view(B, Hkv, 1, D))
        values.narrow(2, slot, 1).copy_(qkv[:, QK:].view(B, Hkv, 1, D))
        if filled < W:  # the ring is not full yet: attend to the written slots only
            keys, values = keys.narrow(2, 0, filled), values.narrow(2, 0, filled)
        # A key/value head's H / Hkv query heads are its queries, (B Hkv, H / Hkv, D), against its
        # (B Hkv, filled, D) keys and values: three calls where scaled_dot_product_attention takes
        # ~50 µs on one query. The queries came scaled (DecodePlan).
        S = keys.size(2)
        scores = torch.bmm(qk[:, : H * D].reshape(B * Hkv, H // Hkv, D),
                           keys.view(B * Hkv, S, D).transpose(1, 2)).softmax(-1)
        if reduced:
            scores = scores.to(values.dtype)
        y = torch.bmm(scores, values.view(B * Hkv, S, D)).view(B, C)
        y = y.to(x.dtype) if reduced else y
        x = _add_projection(x, y, p.proj_weight_t, p.proj_bias) if fused else x + _project(y, p.proj_weight_t, p.proj_bias)
        # MLP: x + down(act(up(norm(x))))
        x = _add_mlp(x, p, norm, fused)
    x = norm(x, model.norm.weight, getattr(model.norm, "bias", None))
    if cache.keep_ids:
        cache.read(torch.tensor([[idx]], device=x.device) if isinstance(idx, int) else idx[:, None])
    else:
        cache.count += 1
        cache.pos += 1
    return torch.mm(x, cache.plan.head_t)


def _steady_ready(cache: KVCache) -> bool:
    """Whether a SteadyStep may decode the next token: one sequence (B = 1) in buffers of all W
    slots (so they are not replaced as the ring fills) of rotary positions (a learned-position
    cache keeps ids and starts again from position 0), a plan of contiguous copies (under
    SMALL_MODEL parameters), float32 values (the keys always are: then both are halves of one
    storage, kv_cache.ring_buffers), no autocast (which would change what the matmuls return)
    and no autograd (its out= products take no gradients)."""
    plan = cache.plan
    keys, values = cache.layers[0]
    return (cache.slots == cache.window and not cache.keep_ids and plan.small and keys.size(0) == 1
            and plan.head_t.dtype == torch.float32 and values.dtype == torch.float32
            and not torch.is_autocast_enabled(plan.head_t.device.type) and not torch.is_grad_enabled())


@without_onednn
def extend(model: Transformer, idx: torch.Tensor, cache: KVCache, last: bool = False) -> torch.Tensor:
    """Several new tokens (B, T), T <= W, after a filled cache -> logits (B, T, V), advancing it
    (with `last`, (B, 1, V): the last token's only).

    What a conversation uses to read a new turn: one forward over the new tokens
    whose queries attend to the ring's keys and values plus their own, with the
    same sliding-window mask as the network's forward over the whole text, so the
    logits equal that forward's (to float rounding) at a cost that does not grow
    with the conversation. As in `decode`, queries and keys are made in
    interleaved order by the plan's weights and rotated as complex numbers, so the
    ring is used as it lies: no gathering, no reordering. Each slot's age tells the
    mask how far back it is; the new keys overwrite the oldest slots afterwards.
    """
    C, W = model.config.n_embd, cache.window
    H, Hkv, D = heads(model)
    QK = (H + Hkv) * D
    B, T = idx.shape
    if T > W:
        raise ValueError(f"extend takes at most {W} tokens at a time, got {T}")
    if cache.plan is None:
        cache.plan = decode_plan(model)
    device = idx.device
    cache.reserve(T)
    # Slot s was last written as entry c_s (the ring's count before that write); its age is
    # count - c_s (1: the newest). Query t (position pos + t) sees it when t + age < W. With
    # fewer than W slots allocated, count + T fit in them (reserve): no wrap, every write new.
    count = cache.count
    slot = torch.arange(cache.slots, device=device)
    age = (count - 1 - slot) % W + 1
    t = torch.arange(T, device=device)[:, None]
    mask = torch.cat(((t + age[None, :] < W) & (slot < count)[None, :],
                      torch.arange(T, device=device)[None, :] <= t), dim=1)  # (T, slots + T)
    G = H // Hkv  # query heads per key/value head: their queries go in one call, (B, Hkv, G T, D)
    mask = mask.repeat(G, 1)
    rot = None
    if not model.learned_positions:
        first, _, _, table = model.rotary._table(cache.pos, T)
        rot = table[cache.pos - first : cache.pos - first + T].view(T, 1, D // 2)  # (T, 1, D/2) complex
    writes = (count + torch.arange(T, device=device)) % W
    x = _embed(model, idx, cache.pos, T)  # (B, T, C)
    norm = norm_function(model)
    for p, (keys, values) in zip(cache.plan.blocks, cache.layers):
        qkv = _project(norm(x, p.norm1_weight, p.norm1_bias), p.qkv_weight_t, p.qkv_bias)
        qk = qkv[..., :QK].float()
        if rot is not None:
            qk = torch.view_as_real(torch.view_as_complex(qk.reshape(B, T, H + Hkv, D // 2, 2)) * rot)
        qk = qk.reshape(B, T, H + Hkv, D).transpose(1, 2)  # (B, H + Hkv, T, D)
        q, k = qk[:, :H].to(keys.dtype), qk[:, H:].to(keys.dtype)
        v = qkv[..., QK:].reshape(B, T, Hkv, D).transpose(1, 2).to(values.dtype)
        y = F.scaled_dot_product_attention(q.reshape(B, Hkv, G * T, D), torch.cat((keys, k), 2),
                                           torch.cat((values, v), 2), attn_mask=mask, scale=1.0)  # q came scaled
        keys[:, :, writes] = k
        values[:, :, writes] = v
        y = y.view(B, H, T, D).transpose(1, 2).reshape(B, T, C)
        x = x + _project(y.to(x.dtype), p.proj_weight_t, p.proj_bias)
        x = _add_mlp(x, p, norm, fused=False)
    cache.read(idx)
    if last:
        x = x[:, -1:]
    x = norm(x, model.norm.weight, getattr(model.norm, "bias", None))
    return torch.matmul(x, cache.plan.head_t)
