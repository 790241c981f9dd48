"""A decoder-only Transformer (GPT) with rotary positions and a key/value cache.

Shape names: B batch, T time, C width (n_embd), H heads, D = C // H head size,
V vocabulary, W = context_length (the attention window).

Positions are rotary (RoPE): queries and keys are rotated by an angle that grows
with their position, so attention scores depend only on the *distance* between
tokens. That is what lets generation run past the context window cheaply:

* The model's attention is a sliding window: a token sees itself and the W - 1
  tokens before it. For sequences of at most W tokens (all of training) this is
  the ordinary causal mask; for longer ones it is a banded causal mask.
* The KV cache is a ring buffer of the last W keys/values per layer. Keys are
  stored already rotated at their absolute position; because only distances
  matter, a shifted window needs no re-rotation and no re-prefill, and each new
  token costs O(W) however long the text grows.
* Full recomputation gives exactly the same logits as the cache (the tests check
  this far past the window): a token's output depends on at most
  n_layer * (W - 1) earlier tokens, so `forward` on that many trailing tokens
  with the banded mask reproduces what the cache computes step by step.

The same network also takes the layouts of models made elsewhere (core/pretrained):
RMSNorm, a gated SiLU MLP (SwiGLU), fewer key/value heads than query heads (grouped-query
attention) and another rotary base make a Llama; learned positions, biases and the tanh
GELU make a GPT-2. A learned-position model has only context_length positions, so its
cache cannot slide: when a text reaches the end of the table, the last half window is
read again from position 0 (a crop, costing one half-window prefill every half window).

This module is the network; decoding one token at a time against the cache
(the same arithmetic, written flat for speed) is in transformer_decode.py.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import minigpt_tui.core.models.fused_block as fused_block
from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models.gelu_slope import gelu as gelu_with_slope
from minigpt_tui.core.models.training_attention import NativeAttention, TrainingAttention, native_fits
from minigpt_tui.core.models.kv_cache import KVCache
from minigpt_tui.core.models.transformer_decode import decode, extend


class Rotary(nn.Module):
    """Rotary position embedding (GPT-NeoX "half split" layout).

    Angles are computed in float64 and only then rounded to float32: positions
    grow without bound while sampling, and float32 angles would drift at large
    positions. The values are cached as a table of CHUNK positions, recomputed
    (once) when a position falls outside it, so neither training (always
    positions 0..W-1) nor decoding (one position after another) pays for
    trigonometry per call.
    """

    CHUNK = 1024

    def __init__(self, head_size: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        # (first position, cos (N, D/2), sin (N, D/2), cos + i sin (N, D/2) complex)
        self._chunk: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._full: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # (length, dtype, device): full_tables
        self._qk: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # (..., q_scale): qk_tables

    def _angles(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(start, start + length, dtype=torch.float64, device=self.inv_freq.device)
        angles = torch.outer(pos, self.inv_freq)
        return angles.cos().float(), angles.sin().float()

    def _table(self, start: int, length: int):
        """The cached chunk, recomputed to begin at `start` unless it covers start..start+length-1."""
        c = self._chunk
        if (c is None or start < c[0] or start + length > c[0] + c[1].size(0)
                or c[1].device != self.inv_freq.device):
            cos, sin = self._angles(start, max(length, self.CHUNK))
            c = self._chunk = (start, cos, sin, torch.complex(cos, sin))
        return c

    def cos_sin(self, start: int, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for positions start..start+length-1, each (length, D/2)."""
        if torch.compiler.is_compiling():  # a pure function for the compiler: no Python-side cache
            cos, sin = self._angles(start, length)
        else:
            first, cos, sin, _ = self._table(start, length)
            cos, sin = cos[start - first : start - first + length], sin[start - first : start - first + length]
        return cos.to(dtype), sin.to(dtype)

    def full_tables(self, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """apply_rotary's tables for positions 0..length-1, each (length, D): cos over both halves,
        sin negated over the first. Evaluation asks for the same ones every time, and training's
        qk_tables are made from them: kept, per length, dtype and device."""
        key = (length, dtype, self.inv_freq.device)
        compiling = torch.compiler.is_compiling()  # then a pure function: no Python-side cache
        if not compiling and key in self._full:
            return self._full[key]
        # Ordinary tensors even when first asked for by the sampler under inference_mode: the same
        # tables are then saved for the backward of training steps, which inference tensors cannot be.
        with torch.inference_mode(False):
            cos, sin = self.cos_sin(0, length, dtype)
            full = (torch.cat((cos, cos), -1), torch.cat((-sin, sin), -1))
        if not compiling:
            _keep(self._full, key, full)
        return full

    def qk_tables(self, length: int, dtype: torch.dtype,
                  q_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """TrainingAttention's tables, each (2, 1, 1, length, D): full_tables' cos and sin for
        queries (times q_scale, the score scale) and for keys, and sin with its halves swapped
        (for the backward). Kept like full_tables' (not for torch.compile, which never asks)."""
        key = (length, dtype, self.inv_freq.device, q_scale)
        if key in self._qk:
            return self._qk[key]
        with torch.inference_mode(False):
            cos, sin = self.full_tables(length, torch.promote_types(dtype, torch.float32))  # rounded once
            scale = torch.tensor([q_scale, 1.0], dtype=cos.dtype, device=cos.device).view(2, 1, 1, 1, 1)
            cos, sin = (cos * scale).to(dtype), (sin * scale).to(dtype)
            tables = (cos, sin, sin.roll(sin.size(-1) // 2, dims=-1))
        _keep(self._qk, key, tables)
        return tables

    def rotation(self, pos: int) -> torch.Tensor:
        """cos + i sin at one position, (D/2,) complex: the same rotation as apply_rotary,
        for pairs (x1_j, x2_j) viewed as complex numbers x1_j + i x2_j."""
        first, _, _, rot = self._table(pos, 1)
        return rot[pos - first]

    def rotations(self, pos: int) -> tuple[int, tuple[torch.Tensor, ...]]:
        """The table's first position and its rotations one view per position, from `pos` on at
        least: what decoding token after token indexes (a view costs a call; these are made
        once per table). A position's rotation is computed from it alone, whichever table holds
        it, so these equal rotation()'s."""
        first, _, _, rot = self._table(pos, 1)
        return first, rot.unbind(0)


def _keep(cache: dict, key, tables) -> None:
    """Remember tables under key; lengths change only with the sampler's prompts, so a few suffice."""
    if len(cache) >= 4:
        cache.clear()
    cache[key] = tables


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, D) queries and/or keys by the (T, D) tables of Rotary.full_tables.

    The rotation of each pair (x1, x2) (the two halves of the last dimension) is
    (x1 cos - x2 sin, x2 cos + x1 sin). With cos repeated over both halves and sin
    negated over the first, that is x * cos + roll(x) * sin, roll swapping the halves:
    four kernels where splitting, rotating and concatenating takes seven, and
    bit-identical to it (x2 * -sin is -(x2 * sin) exactly).
    """
    return x * cos + x.roll(x.size(-1) // 2, dims=-1) * sin


def sliding_window_mask(q_len: int, k_len: int, window: int, device) -> torch.Tensor:
    """(q_len, k_len) boolean mask, True where a query may attend. Queries are the
    last q_len of the k_len positions; each sees itself and window - 1 before it."""
    q = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    k = torch.arange(k_len, device=device)[None, :]
    return (k <= q) & (q - k < window)


# Up to this many positions, training on a CPU attends with batched matmuls (scores, softmax,
# weighted sum: three kernels; TrainingAttention, or plain_causal_attention under torch.compile)
# rather than PyTorch's CPU flash attention, whose tiling does not pay at such sizes. Measured with
# the plain formulation: forward+backward 1.57x faster at context 64, 1.04-1.21x at 128, even at 256
# and 0.65x at 512 (2 threads, float32, batch 8-16, head sizes 32-64); the
# shakespeare-char-transformer step 1.03x (float32) and 1.05x (bf16) faster. The scores are T x T
# per head, so this is for short contexts only; evaluation and sampling keep
# scaled_dot_product_attention.
SMALL_ATTENTION = 128


@functools.lru_cache(maxsize=8)
def _future_mask(T: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(T, T): -inf above the diagonal, 0 elsewhere; the same every training step, so made once
    (an ordinary tensor, whatever mode the first caller was in)."""
    with torch.inference_mode(False):
        return torch.full((T, T), float("-inf"), dtype=dtype, device=device).triu_(1)


def plain_causal_attention(qkv: torch.Tensor, n_head: int, rotary: Rotary, dropout: float) -> torch.Tensor:
    """TrainingAttention's forward in plain differentiable operations, in qkv's dtype, for
    torch.compile (which fuses them itself)."""
    B, T, C = qkv.size(0), qkv.size(1), qkv.size(2) // 3
    H, D = n_head, C // n_head
    x = qkv.view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)  # (3, B, H, T, D)
    q, k = apply_rotary(x[:2], *rotary.full_tables(T, qkv.dtype)).unbind(0)
    future = torch.full((T, T), float("-inf"), dtype=qkv.dtype, device=qkv.device).triu_(1)
    scores = torch.baddbmm(future, q.reshape(B * H, T, D), k.reshape(B * H, T, D).transpose(1, 2), alpha=D ** -0.5)
    weights = F.dropout(scores.softmax(-1), dropout) if dropout else scores.softmax(-1)
    y = torch.bmm(weights, x[2].reshape(B * H, T, D))
    return y.view(B, H, T, D).transpose(1, 2).reshape(B, T, C)


def kv_heads(cfg: ModelConfig) -> int:
    """Key/value heads: model.n_kv_head, or one per query head (0)."""
    return cfg.n_kv_head or cfg.n_head


class CausalSelfAttention(nn.Module):
    """Queries, keys and values from one projection (rows: H query heads, then Hkv key heads,
    then Hkv value heads); with Hkv < H each key/value head serves H / Hkv query heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head = cfg.n_head, kv_heads(cfg)
        self.head_size = cfg.n_embd // cfg.n_head
        self.rotary = cfg.positions == "rotary"
        self.window = cfg.context_length
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, (self.n_head + 2 * self.n_kv_head) * self.head_size, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rotary: Rotary, cache: KVCache | None = None, layer: int = 0):
        """Training, the uncached sampler and the prefill, which also keeps this layer's
        keys and values in `cache` (decoding a token after that is transformer_decode's)."""
        return self.resid_drop(self.proj(self.attend(x, rotary, cache, layer)))

    def attend(self, x, rotary: Rotary, cache: KVCache | None = None, layer: int = 0):
        """forward without the output projection: (B, T, C) heads side by side."""
        qkv = self.qkv(x)
        T, C = qkv.size(1), x.size(2)
        plain = self.rotary and self.n_kv_head == self.n_head  # our own layout: the fast paths below
        if (plain and self.training and T <= min(self.window, SMALL_ATTENTION) and qkv.device.type == "cpu"
                and cache is None):
            # Training on a CPU attends in qkv's own dtype: under bf16 autocast, rotary, the
            # scores and the weighted values are bf16 (the softmax computes in float32 inside its
            # kernel: for bf16 scores PyTorch's CPU softmax gives the float32 softmax rounded
            # once, which tests/test_train_path.py checks). Attending in float32 instead made the
            # step 1.2x longer at the shakespeare-char shape; in bf16 the validation loss after
            # the 2000-step recipe stays within 0.01 of float32's (README, Performance).
            if torch.compiler.is_compiling():  # TrainingAttention's writes into views would break the graph
                y = plain_causal_attention(qkv, self.n_head, rotary, self.dropout)
            else:
                tables = rotary.qk_tables(T, qkv.dtype, (C // self.n_head) ** -0.5)
                attention = NativeAttention if native_fits(qkv, self.n_head, self.dropout) else TrainingAttention
                y = attention.apply(qkv, self.n_head, *tables, _future_mask(T, qkv.dtype, qkv.device), self.dropout)
        elif qkv.dtype == torch.bfloat16 and qkv.device.type == "cpu":
            # Evaluation and sampling under CPU bf16 autocast (and training past SMALL_ATTENTION
            # positions) attend in float32: PyTorch's CPU flash attention is several times slower
            # in bf16 (its backward 7x at the shakespeare-char shape) and float32 keeps the scores
            # of long prompts exact.
            with torch.autocast("cpu", enabled=False):
                y = self._attention(qkv.float(), rotary, cache, layer)
        else:
            y = self._attention(qkv, rotary, cache, layer)
        return y

    def _attention(self, qkv: torch.Tensor, rotary: Rotary, cache: KVCache | None, layer: int) -> torch.Tensor:
        """(B, T, (H + 2 Hkv) D) queries, keys and values -> (B, T, C) by scaled_dot_product_attention,
        queries and keys rotated in at least float32 (under a GPU's autocast too); keeps the
        (rotated) keys and values in `cache`."""
        B, T = qkv.size(0), qkv.size(1)
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_size
        if Hkv == H:
            q, k, v = qkv.view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)  # each (B, H, T, D)
        else:
            q, k, v = qkv.view(B, T, H + 2 * Hkv, D).transpose(1, 2).split((H, Hkv, Hkv), dim=1)
        if self.rotary:
            tables = rotary.full_tables(T, torch.promote_types(qkv.dtype, torch.float32))
            if Hkv == H:
                q, k = apply_rotary(torch.stack((q, k)), *tables).unbind(0)  # in one go: half the kernels
            else:
                q, k = apply_rotary(q, *tables), apply_rotary(k, *tables)
        if cache is not None:
            cache.store(layer, k, v)
        if Hkv != H:  # each key/value head serves H / Hkv query heads, in order
            k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        drop = self.dropout if self.training else 0.0
        if T <= self.window:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:
            mask = sliding_window_mask(T, T, self.window, q.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return y.transpose(1, 2).reshape(B, T, H * D)


def gelu_approximation(cfg: ModelConfig) -> str:
    """The MLP's activation as transformer_decode names it: F.gelu's `approximate` ("none", exact
    GELU with erf, is the default; runs from before model.activation existed used the tanh
    approximation, which costs twice as much in bf16 on a CPU: 0.97 against 0.44 ms
    forward+backward at the shakespeare-char shape, 8% of a step), or "swiglu"."""
    return {"gelu_tanh": "tanh", "swiglu": "swiglu"}.get(cfg.activation, "none")


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, the two halves of one projection's output (one matmul for both)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


class MLP(nn.Module):
    """down(gelu(up(x))), or with activation "swiglu" down(silu(gate(x)) * up(x)), `up` then
    holding the gate's rows and the up rows (in that order)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.mlp_hidden or 4 * cfg.n_embd
        self.approximate = gelu_approximation(cfg)
        gated = self.approximate == "swiglu"
        self.up = nn.Linear(cfg.n_embd, (2 if gated else 1) * hidden, bias=cfg.bias)
        self.down = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.down(self.hidden(x)))

    def hidden(self, x):
        """forward without the down projection: the activated hidden units."""
        h = self.up(x)
        if self.approximate == "swiglu":
            h = swiglu(h)
        elif self.approximate == "none":
            h = gelu_with_slope(h)  # F.gelu(h), its backward one multiply where the C kernels are built
        else:
            h = F.gelu(h, approximate=self.approximate)
        return h


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, rotary: Rotary, cache=None, layer=0):
        if cache is None and fused_block.fits(self, x):  # a CPU float32 training step: one Function
            return fused_block.block_step(self, x, rotary)
        if cache is None and fused_block.reads(self, x):  # an evaluation: the same kernels, nothing kept
            return fused_block.block_forward(self, x, rotary)
        attn, mlp = self.attn, self.mlp
        x = add_projected(x, attn.attend(self.norm1(x), rotary, cache, layer), attn.proj, attn.resid_drop)
        return add_projected(x, mlp.hidden(self.norm2(x)), mlp.down, mlp.drop)


def add_projected(residual: torch.Tensor, h: torch.Tensor, proj: nn.Linear, drop: nn.Dropout) -> torch.Tensor:
    """residual + drop(proj(h)), in one addmm where that is the same sum (no bias, no dropout at
    work, float32 outside autocast, which would round the residual stream to bf16): the matmul adds
    its product to the residual as it writes it, one pass over the activations fewer (~0.1 ms a
    residual at the shakespeare-char shape on 2 cores, 8 a training step)."""
    if (proj.bias is None and not (drop.training and drop.p) and residual.dtype == h.dtype == proj.weight.dtype
            and not torch.is_autocast_enabled(residual.device.type)):
        C = residual.size(-1)
        return torch.addmm(residual.reshape(-1, C), h.reshape(-1, h.size(-1)), proj.weight.t()).view(residual.shape)
    return residual + drop(proj(h))


class Transformer(nn.Module):
    family = "transformer"

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.config = cfg
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, cfg.n_embd)
        self.learned_positions = cfg.positions == "learned"
        if self.learned_positions:
            self.pos_embed = nn.Embedding(cfg.context_length, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = make_norm(cfg)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.embed.weight
        self.rotary = Rotary(cfg.n_embd // cfg.n_head, cfg.rope_theta)
        self._init_weights()

    def _init_weights(self):
        # GPT-2 style: small normal weights make the initial logits nearly uniform,
        # so the loss at step 0 is close to ln(V); residual output projections are
        # scaled down by the depth so the residual stream does not grow with it.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.down):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))

    @property
    def receptive_field(self) -> int:
        """How many trailing tokens determine the next-token logits exactly (with learned
        positions: the window, all a full recompute reads)."""
        if self.learned_positions:
            return self.config.context_length
        return self.config.n_layer * (self.config.context_length - 1) + 1

    def new_state(self) -> KVCache:
        """An empty cache: the next forward is a prompt that fills it."""
        return KVCache(self.config.n_layer, self.config.context_length, keep_ids=self.learned_positions)

    def forward(self, idx: torch.Tensor, state: KVCache | None = None, last: bool = False):
        """idx (B, T) -> logits (B, T, V), state; with last=True only the last position's, (B, 1, V).

        With state=None the whole sequence is processed (training, or the
        uncached sampler). With an empty cache the sequence is a prompt: the
        cache is filled (only its last `receptive_field` tokens can matter to
        what follows, so a sampler need not feed more). With a filled cache, one
        token is decoded; several are read a window at a time (transformer_decode.extend). A cache is an inference tool:
        decoding applies no dropout.

        `last`: what a sampler reading a prompt or a chat turn wants, the next token's logits and
        no others. The head is a (V, C) matmul per position, as much as 27% (SmolLM2) to 45%
        (GPT-2 124M) of the rest of the network's weights: skipping it at every position but the
        last makes the time to the first token that much shorter.
        """
        if self.learned_positions and state is not None:
            return self._read_learned(idx, state, last), state
        if state is not None and not state.empty:
            if idx.size(1) == 1:
                return decode(self, idx[:, 0], state).unsqueeze(1), state
            # Several tokens (a conversation's new turn): a window at a time against the ring.
            W = state.window
            pieces = [extend(self, idx[:, t : t + W], state, last) for t in range(0, idx.size(1), W)]
            return (pieces[-1] if last else torch.cat(pieces, 1)), state
        return self._prefill(idx, state, last), state

    def _prefill(self, idx: torch.Tensor, state: KVCache | None, last: bool = False) -> torch.Tensor:
        """The whole network over idx from position 0 (filling an empty cache, if given); the
        logits of every position, or with `last` of the last one only."""
        T = idx.size(1)
        x = self.embed(idx)
        if self.learned_positions:
            if T > self.config.context_length:
                raise ValueError(f"a learned-position model reads at most {self.config.context_length} "
                                 f"tokens at once, got {T}")
            x = x + self.pos_embed.weight[:T]
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, self.rotary, state, i)
        if last:
            x = x[:, -1:]
        logits = self.head(self.norm(x))
        if state is not None:
            state.prefilled(idx)
        return logits

    def _read_learned(self, idx: torch.Tensor, state: KVCache, last: bool = False) -> torch.Tensor:
        """Tokens read into a learned-position model's cache, in order, cropping when the
        positions run out (see the module docstring): logits (B, T, V), each token's as read
        (with `last`, (B, 1, V): the last token's)."""
        W, T = state.window, idx.size(1)
        out, t = [], 0
        while t < T:
            if state.pos == W:
                kept = state.ids[:, W - W // 2 :]
                state.reset()
                self._prefill(kept, state)
            piece = idx[:, t : t + W - state.pos]
            if state.empty:
                out.append(self._prefill(piece, state, last))
            elif piece.size(1) == 1:
                out.append(decode(self, piece[:, 0], state).unsqueeze(1))
            else:
                out.append(extend(self, piece, state, last))
            t += piece.size(1)
        return out[-1][:, -1:] if last else torch.cat(out, 1)

    def decode_step(self, token: int, state: KVCache) -> tuple[torch.Tensor, KVCache]:
        """Feed one token (an int) -> logits (1, V), state. The sampler's hot path (transformer_decode)."""
        if state.empty or (self.learned_positions and state.pos == state.window):
            logits, state = self(torch.tensor([[token]], device=self.embed.weight.device), state)
            return logits[:, -1], state
        return decode(self, token, state), state
