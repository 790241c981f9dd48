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
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt_tui.core.config import ModelConfig


class Rotary(nn.Module):
    """Rotary position embedding (GPT-NeoX "half split" layout)."""

    def __init__(self, head_size: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._table: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def cos_sin(self, start: int, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for positions start..start+length-1, each (length, D/2).

        Angles are computed in float64: positions grow without bound while
        sampling, and float32 angles would drift at large positions.
        """
        if start == 0 and self._table is not None and self._table[0] >= length:
            cos, sin = self._table[1][:length], self._table[2][:length]
            return cos.to(dtype), sin.to(dtype)
        pos = torch.arange(start, start + length, dtype=torch.float64, device=self.inv_freq.device)
        angles = torch.outer(pos, self.inv_freq)
        cos, sin = angles.cos().float(), angles.sin().float()
        if start == 0 and not torch.compiler.is_compiling():
            self._table = (length, cos, sin)  # training always asks for 0..W-1
        return cos.to(dtype), sin.to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, D) queries or keys by (T, D/2) angles."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def sliding_window_mask(q_len: int, k_len: int, window: int, device) -> torch.Tensor:
    """(q_len, k_len) boolean mask, True where a query may attend. Queries are the
    last q_len of the k_len positions; each sees itself and window - 1 before it."""
    q = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    k = torch.arange(k_len, device=device)[None, :]
    return (k <= q) & (q - k < window)


class KVCache:
    """Per-layer ring buffers holding the rotated keys and values of the last W tokens."""

    def __init__(self, n_layer: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer
        self.count = 0  # ring entries written per layer; the next write goes to count % W
        self.pos = 0  # absolute position of the next token

    @property
    def empty(self) -> bool:
        return self.pos == 0


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.window = cfg.context_length
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # 3x (B,H,T,D)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        drop = self.dropout if self.training else 0.0

        if cache is not None and not cache.empty:
            # Decoding one token: attend over the ring buffer after writing into it.
            # Order inside the ring does not matter to a single query (no mask needed).
            assert T == 1, "the cache decodes one token at a time"
            keys, values = cache.layers[layer]
            slot = cache.count % self.window
            if keys.size(2) < self.window:  # ring not full yet: grow it
                keys, values = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
                cache.layers[layer] = (keys, values)
            else:
                keys[:, :, slot], values[:, :, slot] = k[:, :, 0], v[:, :, 0]
            y = F.scaled_dot_product_attention(q, keys, values)
        else:
            if T <= self.window:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
            else:
                mask = sliding_window_mask(T, T, self.window, x.device)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
            if cache is not None:  # prefill: keep the last W keys/values, oldest first
                keep = min(T, self.window)
                cache.layers[layer] = (k[:, :, -keep:].clone(), v[:, :, -keep:].clone())
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.down = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.down(F.gelu(self.up(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cache=None, layer=0):
        x = x + self.attn(self.norm1(x), cos, sin, cache, layer)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    family = "transformer"

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.config = cfg
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.embed.weight
        self.rotary = Rotary(cfg.n_embd // cfg.n_head)
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
        """How many trailing tokens determine the next-token logits exactly."""
        return self.config.n_layer * (self.config.context_length - 1) + 1

    def new_state(self, batch_size: int = 1) -> KVCache:
        return KVCache(self.config.n_layer)

    def forward(self, idx: torch.Tensor, state: KVCache | None = None):
        """idx (B, T) -> logits (B, T, V), state.

        With state=None the whole sequence is processed (training, or the
        uncached sampler). With an empty cache the sequence is a prompt: the
        cache is filled. With a filled cache, tokens are decoded one at a time.
        """
        if state is not None and not state.empty and idx.size(1) > 1:
            outs = [self(idx[:, t : t + 1], state)[0] for t in range(idx.size(1))]
            return torch.cat(outs, dim=1), state
        if state is not None and state.empty and idx.size(1) > self.receptive_field:
            idx = idx[:, -self.receptive_field :]  # earlier tokens cannot affect anything cached
            start = 0
        else:
            start = state.pos if state is not None else 0
        T = idx.size(1)
        x = self.drop(self.embed(idx))
        cos, sin = self.rotary.cos_sin(start, T, x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, state, i)
        logits = self.head(self.norm(x))
        if state is not None:
            # The ring holds min(T, W) entries after a prefill, oldest in slot 0; the
            # next write goes to slot count % W, i.e. over the oldest entry once full.
            state.count = state.count + 1 if state.count else min(T, self.config.context_length)
            state.pos += T
        return logits, state
