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

This module is the network; decoding one token at a time against the cache
(the same arithmetic, written flat for speed) is in transformer_decode.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models.transformer_decode import KVCache, decode, extend


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

    def rotation(self, pos: int) -> torch.Tensor:
        """cos + i sin at one position, (D/2,) complex: the same rotation as apply_rotary,
        for pairs (x1_j, x2_j) viewed as complex numbers x1_j + i x2_j."""
        first, _, _, rot = self._table(pos, 1)
        return rot[pos - first]


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
        """Training, the uncached sampler and the prefill, which also keeps this layer's
        keys and values in `cache` (decoding a token after that is transformer_decode's)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # 3x (B,H,T,D)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        drop = self.dropout if self.training else 0.0
        if T <= self.window:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:
            mask = sliding_window_mask(T, T, self.window, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        if cache is not None:
            cache.store(layer, k, v)
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

    def new_state(self) -> KVCache:
        """An empty cache: the next forward is a prompt that fills it."""
        return KVCache(self.config.n_layer, self.config.context_length)

    def forward(self, idx: torch.Tensor, state: KVCache | None = None):
        """idx (B, T) -> logits (B, T, V), state.

        With state=None the whole sequence is processed (training, or the
        uncached sampler). With an empty cache the sequence is a prompt: the
        cache is filled (only its last `receptive_field` tokens can matter to
        what follows, so a sampler need not feed more). With a filled cache, one
        token is decoded; several are read a window at a time (transformer_decode.extend). A cache is an inference tool:
        decoding applies no dropout.
        """
        if state is not None and not state.empty:
            if idx.size(1) == 1:
                return decode(self, idx[:, 0], state).unsqueeze(1), state
            # Several tokens (a conversation's new turn): a window at a time against the ring.
            W = state.window
            return torch.cat([extend(self, idx[:, t : t + W], state) for t in range(0, idx.size(1), W)], 1), state
        T = idx.size(1)
        x = self.drop(self.embed(idx))
        cos, sin = self.rotary.cos_sin(0, T, x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, state, i)
        logits = self.head(self.norm(x))
        if state is not None:
            state.prefilled(T)
        return logits, state

    def decode_step(self, token: int, state: KVCache) -> tuple[torch.Tensor, KVCache]:
        """Feed one token (an int) -> logits (1, V), state. The sampler's hot path (transformer_decode)."""
        if state.empty:
            logits, state = self(torch.tensor([[token]], device=self.embed.weight.device), state)
            return logits[:, -1], state
        return decode(self, token, state), state
