"""Decoding one token of one sequence into a ring of all W slots: how a small model's tokens are
decoded.

transformer_decode.decode runs a block as about 30 torch calls for any batch and any size of the
ring's buffers. Once they hold all W slots (from the prompt on, for windows up to
KVCache.MIN_SLOTS) and the batch is one sequence, every token is the same 12 calls a block on
the same tensors (two more while the ring fills, more with biases). The rest is Python: views of
the ring and of the qkv row, an nn.Module's attributes, a NamedTuple's fields, the rotation and
embedding rows. At one token per step each of those costs a fraction of a microsecond to a few,
a fair part of a 0.8M-parameter model's token. A SteadyStep makes all of it once per cache and
keeps it in plain tuples, so a token is the torch calls and little else: within 4 µs of the same
calls written out with nothing around them (175 against 171 µs at shakespeare-char-transformer's
shape). The calls are decode's own on the same numbers, so the logits are bit for bit the general
path's (tests/test_sampling.py).

Shape names as in transformer.py: C width, H heads, D head size, W window, V vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from minigpt_tui.core.models.decode_plan import heads, mlp_activation, norm_function

if TYPE_CHECKING:
    from minigpt_tui.core.models.kv_cache import KVCache
    from minigpt_tui.core.models.transformer import Transformer


class SteadyStep:
    """Decodes the next token of one sequence into a cache's ring of W slots (transformer_decode's
    _steady_ready says when; made by decode, kept in cache.steady until the buffers change).

    Per layer it holds the DecodePlan's weights and:
    - a scratch row the qkv projection is written into, with views of its queries and keys (one
      complex tensor, rotated in place), its queries grouped by key/value head, and its new key
      and value together, (2, Hkv, 1, D): the ring's keys and values are the two halves of one
      storage (kv_cache.ring_buffers), so one copy writes both into a slot;
    - the ring as attention reads it, and scratch for attention's output with its view as a row;
    and per slot, made when the slot is first written, each layer's view of the slot's key and
    value (a long window's W views per layer would cost tens of ms to make at once, again after
    every copy of the cache).
    Made in the inference mode it is used in: scratch made under inference mode cannot be written
    outside it (ready() says no, and decode makes a new one).
    """

    def __init__(self, model: Transformer, cache: KVCache):
        H, Hkv, D = heads(model)
        QK, G, W = (H + Hkv) * D, H // Hkv, cache.window
        plan = cache.plan
        self.window = W
        self.inference = torch.is_inference_mode_enabled()
        self.device_type = plan.head_t.device.type
        self.norm = norm_function(model)
        self.rotary = model.rotary
        self.rotation_first, self.rotation_rows = 0, ()
        self.embed_weight = model.embed.weight
        self.embed_rows: dict[int, torch.Tensor] = {}
        self.final_norm = (model.norm.weight, getattr(model.norm, "bias", None))
        self.head_t = plan.head_t
        self.layers = []
        self.rings = []  # each layer's keys (Hkv, W, D) and how far its values lie after them
        self.slot_views: list[tuple[torch.Tensor, ...] | None] = [None] * W  # by slot, per layer
        for p, (keys, values) in zip(plan.blocks, cache.layers):
            keys, values = keys[0], values[0]  # (Hkv, W, D) each, halves of one storage
            apart = values.storage_offset() - keys.storage_offset()
            if keys.untyped_storage().data_ptr() != values.untyped_storage().data_ptr() or apart != keys.numel():
                raise ValueError("a SteadyStep needs keys and values in one storage (kv_cache.ring_buffers)")
            self.rings.append((keys, apart))
            qkv = keys.new_empty(1, QK + Hkv * D)
            y = keys.new_empty(Hkv, G, D)
            self.layers.append((
                p.norm1_weight, p.norm1_bias, p.qkv_weight_t, p.qkv_bias,
                qkv,
                torch.view_as_complex(qkv[0, :QK].view(H + Hkv, D // 2, 2)),  # queries and keys, rotated in place
                qkv[0, : H * D].view(Hkv, G, D),  # a key/value head's G query heads together
                qkv[0, H * D :].view(2, Hkv, 1, D),  # the new key and value
                keys.transpose(1, 2), values,  # (Hkv, D, W), (Hkv, W, D)
                y, y.view(1, H * D),
                p.proj_weight_t, p.proj_bias, p.norm2_weight, p.norm2_bias,
                p.up_weight_t, p.up_bias, p.down_weight_t, p.down_bias, p.activation,
            ))

    def ready(self) -> bool:
        """Whether this step may decode now: in the inference mode it was made in, no autocast, no
        autograd."""
        return (self.inference == torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled(self.device_type))

    def _rotation(self, pos: int) -> torch.Tensor:
        """Rotary's rotation at `pos`, (D/2,) complex, from rows made once per table."""
        row = pos - self.rotation_first
        if row >= len(self.rotation_rows) or row < 0:
            self.rotation_first, self.rotation_rows = self.rotary.rotations(pos)
            row = pos - self.rotation_first
        return self.rotation_rows[row]

    def _slot(self, slot: int) -> tuple[torch.Tensor, ...]:
        """Each layer's view of a slot's key and value, (2, Hkv, 1, D)."""
        views = self.slot_views[slot]
        if views is None:
            views = self.slot_views[slot] = tuple(
                keys.as_strided((2, keys.size(0), 1, keys.size(2)), (apart, keys.stride(0), keys.stride(1), 1),
                                keys.storage_offset() + slot * keys.stride(1))
                for keys, apart in self.rings)
        return views

    def _embedding(self, idx: int) -> torch.Tensor:
        """Token idx's embedding, (1, C): a view made at its first use."""
        row = self.embed_rows.get(idx)
        if row is None:
            row = self.embed_rows[idx] = self.embed_weight[idx : idx + 1]
        return row

    def __call__(self, idx: int, cache: KVCache) -> torch.Tensor:
        """Token idx -> logits (1, V), advancing the cache: transformer_decode.decode's calls, with
        oneDNN off as there. Its helpers (_project, _add_projection, _add_mlp) and the
        without_onednn decorator are written out here on purpose: a Python call each costs ~0.3 µs,
        and the decorator alone made this step 1.018x slower (IQR 1.011-1.029, 30 alternations) in
        a loop that is otherwise within 4 µs of the bare torch calls."""
        count = cache.count
        slot = count % self.window
        filled = count + 1 if count + 1 < self.window else 0  # while the ring fills: its written slots
        rot = self._rotation(cache.pos)
        x = self._embedding(idx)
        pairs = self._slot(slot)
        norm, mm, addmm, bmm = self.norm, torch.mm, torch.addmm, torch.bmm
        mkldnn = torch.backends.mkldnn
        was, mkldnn.enabled = mkldnn.enabled, False
        try:
            for (n1_w, n1_b, qkv_w, qkv_b, qkv, qk, q, kv, keys_t, values, y, y_row,
                 proj_w, proj_b, n2_w, n2_b, up_w, up_b, down_w, down_b, activation), pair in zip(self.layers, pairs):
                # attention: x + proj(attend(rotate(q), ring of rotated k, v)); the queries came scaled
                h = norm(x, n1_w, n1_b)
                if qkv_b is None:
                    mm(h, qkv_w, out=qkv)
                else:
                    addmm(qkv_b, h, qkv_w, out=qkv)
                qk.mul_(rot)
                pair.copy_(kv)
                if filled:  # attend to the written slots only
                    keys_t, values = keys_t.narrow(2, 0, filled), values.narrow(1, 0, filled)
                bmm(bmm(q, keys_t).softmax(-1), values, out=y)
                x = addmm(x, y_row, proj_w) if proj_b is None else x + addmm(proj_b, y_row, proj_w)
                # MLP: x + down(act(up(norm(x))))
                h = norm(x, n2_w, n2_b)
                h = mlp_activation(mm(h, up_w) if up_b is None else addmm(up_b, h, up_w), activation)
                x = addmm(x, h, down_w) if down_b is None else x + addmm(down_b, h, down_w)
            logits = mm(norm(x, *self.final_norm), self.head_t)
        finally:
            mkldnn.enabled = was
        cache.count += 1
        cache.pos += 1
        return logits
