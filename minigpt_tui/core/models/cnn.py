"""A causal convolutional language model (WaveNet / ByteNet style) with a streaming state.

Shape names: B batch, T time, C width (n_embd), H the gated convolution's width, k kernel
size, d a layer's dilation, L = (k - 1) x d the inputs a layer looks back over, V vocabulary.

The network: token embedding, then n_layer pre-norm residual blocks

    x = x + dropout(out(glu(conv(norm(x)))))

where conv is a causal dilated 1-D convolution from C to 2H channels: the output at time t
reads the k inputs x[t - (k-1) d], ..., x[t - d], x[t] (zeros before the first token). It is
written as one Linear over those k inputs side by side (the "taps", oldest first), which is
the same function as torch's Conv1d and one matmul on a CPU. glu(a, b) = a * sigmoid(b)
(Dauphin et al.'s gated linear unit) halves 2H to H, and `out` (H to C) writes back into the
residual stream: each block is a gated MLP whose input is k moments of the past. Block i has
dilation 2 ** (i mod dilation_cycle): 1, 2, 4, ... doubling, then starting again at 1. A
final norm and a softmax head over the vocabulary, tied to the embedding (model.tie_weights).

The receptive field is finite and exact: the next-token logits after token t depend on tokens
t - R + 1 .. t only, with R = 1 + sum over the layers of (k - 1) x d. Training reads windows
of context_length tokens from zeros, so a recipe makes R about the context length: every
tap is then trained on real text at the window's last positions.

The state, the CNN's counterpart of the RNN's hidden state and the Transformer's KV cache
("fast WaveNet" generation, Paine et al. 2016): each layer keeps a queue of its last L
normed inputs, so a new token costs one column per layer (one small matmul for the taps,
one for `out`) instead of a pass over the receptive field. Feeding text in one call, in
several, or token by token gives the same logits as one pass over the whole text
(ConvState, decode_step).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models.transformer import make_norm


def dilations(cfg: ModelConfig) -> list[int]:
    """Each layer's dilation: 1, 2, 4, ... for dilation_cycle layers, then from 1 again."""
    return [2 ** (i % cfg.dilation_cycle) for i in range(cfg.n_layer)]


def receptive_field(cfg: ModelConfig) -> int:
    """R = 1 + sum of (kernel_size - 1) x dilation over the layers: how many trailing tokens
    determine the next-token logits (exactly)."""
    return 1 + sum((cfg.kernel_size - 1) * d for d in dilations(cfg))


def gated_width(cfg: ModelConfig) -> int:
    """H, the gated convolution's width: model.mlp_hidden, or n_embd when that is 0 (2 x n_embd
    cost twice as much per token and learnt less per second in the recipe's trials)."""
    return cfg.mlp_hidden or cfg.n_embd


class ConvBlock(nn.Module):
    """x + dropout(out(glu(conv(norm(x))))), conv causal with kernel k and dilation d."""

    def __init__(self, cfg: ModelConfig, dilation: int):
        super().__init__()
        self.kernel_size, self.dilation = cfg.kernel_size, dilation
        self.span = (cfg.kernel_size - 1) * dilation  # L: the past inputs the taps reach
        hidden = gated_width(cfg)
        self.norm = make_norm(cfg)
        self.conv = nn.Linear(cfg.kernel_size * cfg.n_embd, 2 * hidden, bias=cfg.bias)  # k taps, oldest first
        self.out = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C), past (B, L, C) the normed inputs before x (None: zeros) -> the block's
        output (B, T, C) and the last L normed inputs (what the next call's `past` is)."""
        h = self.norm(x)
        T, d = h.size(1), self.dilation
        padded = F.pad(h, (0, 0, self.span, 0)) if past is None else torch.cat((past.to(h.dtype), h), 1)
        taps = torch.cat([padded[:, j * d : j * d + T] for j in range(self.kernel_size)], -1)  # (B, T, k C)
        y = self.out(F.glu(self.conv(taps), -1))
        return x + self.drop(y), padded[:, padded.size(1) - self.span :]


class ConvState:
    """Each layer's queue of its last inputs (normed), for one batch of sequences.

    A queue is a ring of M = L + 1 slots kept twice over, (B, 2M, C), slot i equal to slot
    i + M, so that the last M inputs, oldest first, are always contiguous rows: at head r, the
    rows r .. r + M - 1. Reading a token writes its input over the oldest (rows r and r + M);
    the rows r + 1 .. r + M then end with it, and its k taps are every d-th of them, a strided
    view (no gathering, no concatenation); the head moves on by one. `plan` holds the weights
    arranged for decode_step, taken at the first decoded token, so a state belongs to the
    weights it was filled with; `rows` the queues of a single sequence as 2-D views.
    """

    def __init__(self, n_layer: int):
        self.queues: list[torch.Tensor | None] = [None] * n_layer
        self.heads = [0] * n_layer
        self.pos = 0  # tokens read
        self.plan: list[tuple] | None = None
        self.rows: list[torch.Tensor] | None = None

    @property
    def empty(self) -> bool:
        return self.pos == 0

    def past(self, layer: int) -> torch.Tensor | None:
        """Layer's last L inputs, oldest first (B, L, C), a view; None before the first token."""
        queue = self.queues[layer]
        if queue is None:
            return None
        M = queue.size(1) // 2
        return queue[:, self.heads[layer] + 1 : self.heads[layer] + M]

    def keep(self, layer: int, last: torch.Tensor) -> None:
        """Replace layer's queue with `last` (B, L, C), oldest first (slot 0, the one before
        them, is never read again: zeros)."""
        before = last.new_zeros(last.size(0), 1, last.size(2))
        self.queues[layer] = torch.cat((before, last, before, last), 1)
        self.heads[layer] = 0
        self.rows = None

    def copy(self) -> "ConvState":
        """An independent copy (decode_step writes the queues in place): what a conversation
        keeps at a turn boundary. The plan is the weights' arrangement, shared, not copied."""
        twin = ConvState(len(self.queues))
        twin.queues = [None if q is None else q.clone() for q in self.queues]
        twin.heads, twin.pos, twin.plan = list(self.heads), self.pos, self.plan
        return twin


class ConvLanguageModel(nn.Module):
    family = "cnn"

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.config = cfg
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(ConvBlock(cfg, d) for d in dilations(cfg))
        self.norm = make_norm(cfg)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.embed.weight
        # GPT-2 style, as the Transformer: small weights make the first logits nearly uniform
        # (loss ~ ln V); the residual writes are scaled down by the depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:
            nn.init.normal_(block.out.weight, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @property
    def receptive_field(self) -> int:
        """Exactly how many trailing tokens determine the next-token logits (see receptive_field)."""
        return receptive_field(self.config)

    def new_state(self) -> ConvState:
        return ConvState(len(self.blocks))

    def forward(self, idx: torch.Tensor, state: ConvState | None = None, last: bool = False):
        """idx (B, T) -> logits (B, T, V), state. state=None: the sequence on its own, from
        zeros (training); a state: idx continues what it has read (any number of tokens).
        With `last`, the last position's logits only, (B, 1, V)."""
        x = self.drop(self.embed(idx))
        for i, block in enumerate(self.blocks):
            x, kept = block(x, state.past(i) if state is not None else None)
            if state is not None:
                state.keep(i, kept)
        if state is not None:
            state.pos += idx.size(1)
        if last:
            x = x[:, -1:]
        return self.head(self.norm(x)), state

    def _plan(self) -> list[tuple]:
        """Per block what decode_step needs: the norm's weight and bias, the conv and `out`
        weights transposed (torch.mm's layout: views, no copies) and their biases, M and d."""
        return [(b.norm.weight, getattr(b.norm, "bias", None), b.conv.weight.detach().t(), b.conv.bias,
                 b.out.weight.detach().t(), b.out.bias, b.span + 1, b.dilation) for b in self.blocks]

    def decode_step(self, token: int, state: ConvState) -> tuple[torch.Tensor, ConvState]:
        """Feed one token (an int) -> logits (1, V), state; the sampler's hot path.

        The same arithmetic as forward on a (1, 1) input (dropout off: this is for
        inference), written flat on torch calls, because at one token their number is the
        cost: per layer a norm, the queue write, the taps (a strided view, made contiguous),
        two matmuls and the GLU."""
        if state.empty:
            logits, state = self(torch.tensor([[token]], device=self.embed.weight.device), state)
            return logits[:, -1], state
        if state.plan is None:
            state.plan = self._plan()
        if state.rows is None:  # (one sequence: its queues as (2M, C) views, one index fewer per slice)
            state.rows = [q[0] for q in state.queues]
        cfg = self.config
        C, eps, rms = cfg.n_embd, cfg.norm_eps, cfg.norm == "rmsnorm"
        # Under autocast the matmuls return bf16: keep the residual stream float32 (x + linear).
        fused = not torch.is_autocast_enabled(self.embed.weight.device.type)
        x = self.embed.weight[token : token + 1]  # (1, C)
        heads = state.heads
        for i, (nw, nb, cw_t, cb, ow_t, ob, M, d) in enumerate(state.plan):
            h = F.rms_norm(x, (C,), nw, eps) if rms else torch.layer_norm(x, (C,), nw, nb, eps)
            queue, r = state.rows[i], heads[i]
            queue[r::M] = h  # rows r and r + M: the oldest input, now the newest
            taps = queue[r + 1 : r + 1 + M : d].reshape(1, -1)  # (1, k C), oldest first
            u = torch.mm(taps, cw_t) if cb is None else torch.addmm(cb, taps, cw_t)
            g = F.glu(u, -1)
            x = torch.addmm(x, g, ow_t) if fused and ob is None else x + F.linear(g, ow_t.t(), ob)
            heads[i] = r + 1 if r + 1 < M else 0
        state.pos += 1
        x = F.rms_norm(x, (C,), self.norm.weight, eps) if rms else torch.layer_norm(
            x, (C,), self.norm.weight, self.norm.bias, eps)
        return F.linear(x, self.head.weight), state
