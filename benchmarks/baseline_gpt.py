"""The side-by-side baseline: a GPT-2-style model as nanoGPT writes it (benchmarks only, not the app).

What makes it "GPT-2 style", against minigpt-tui's Transformer (rotary positions, no biases):
  * learned absolute position embeddings (wpe) added to the token embeddings (wte);
  * pre-norm blocks with LayerNorm *with* bias, and biases in every Linear layer;
  * attention through F.scaled_dot_product_attention(is_causal=True);
  * an MLP C -> 4C -> C with exact GELU (nn.GELU(), as nanoGPT);
  * the output head tied to wte; GPT-2 initialisation (normal 0.02, residual projections
    0.02 / sqrt(2 * n_layer), zero biases).

It trains with minigpt-tui's own optimizer and schedule (trainer.make_optimizer, trainer.lr_at:
AdamW, weight decay on matrices only, fused on the CPU, warm-up then cosine) on the very batches
minigpt-tui's trainer draws, so the comparison isolates the model and the training step. The step
below is nanoGPT's: forward, cross-entropy, backward, clip the gradient norm, AdamW step, zero the
gradients (set to None), in float32 (nanoGPT on a CPU does not autocast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class BaselineConfig:
    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    context_length: int = 64
    dropout: float = 0.0
    bias: bool = True


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class BaselineGPT(nn.Module):
    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.context_length, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        """idx (B, T) -> logits (B, T, V) at every position (training and evaluation)."""
        T = idx.size(1)
        assert T <= self.config.context_length
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def train_step(model: BaselineGPT, optimizer: torch.optim.Optimizer, micro_batches, lr: float,
               grad_clip: float) -> float:
    """One optimizer step over the given (inputs, targets) micro-batches; returns the mean loss."""
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    total = 0.0
    n = len(micro_batches)
    for x, y in micro_batches:
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        (loss / n).backward()
        total += loss.item()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / n


@torch.no_grad()
def mean_loss(model: BaselineGPT, batches) -> float:
    """Mean cross-entropy over fixed (inputs, targets) batches, as minigpt-tui's evaluation does."""
    model.eval()
    total = 0.0
    for x, y in batches:
        logits = model(x)
        total += F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.reshape(-1)).item()
    return total / len(batches)
