"""A small Transformer's steady decode step in one native call (core/native.py's decode_step, in
native_kernels.c): SteadyStep's arithmetic as plain loops instead of ~50 torch calls a token, where
a C compiler is at hand. core/native.py says why and how it is built; where it is not, the step is
SteadyStep's."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import torch

from minigpt_tui.core import native
from minigpt_tui.core.models.decode_plan import heads
from minigpt_tui.core.models.steady_decode import SteadyStep

if TYPE_CHECKING:
    from minigpt_tui.core.models.kv_cache import KVCache
    from minigpt_tui.core.models.transformer import Transformer

NORMS = {"layernorm": 0, "rmsnorm": 1}  # ModelConfig.norm -> native_kernels.c's
ACTIVATIONS = {"none": 0, "tanh": 1, "swiglu": 2}  # DecodePlan.activation -> native_kernels.c's
LAYER_FIELDS = ("norm1_weight", "norm1_bias", "qkv_weight_t", "qkv_bias", "proj_weight_t", "proj_bias",
                "norm2_weight", "norm2_bias", "up_weight_t", "up_bias", "down_weight_t", "down_bias")


class _Layer(ctypes.Structure):  # native_kernels.c's Layer
    _fields_ = [*((name, ctypes.c_void_p) for name in LAYER_FIELDS), ("keys", ctypes.c_void_p),
                ("values", ctypes.c_void_p)]


class _Model(ctypes.Structure):  # native_kernels.c's Model
    _fields_ = [*((name, ctypes.c_int) for name in ("n_layer", "C", "H", "Hkv", "D", "W", "F", "V", "norm",
                                                     "activation")),
                ("eps", ctypes.c_float), ("layers", ctypes.POINTER(_Layer)),
                ("final_w", ctypes.c_void_p), ("final_b", ctypes.c_void_p), ("head", ctypes.c_void_p),
                ("scratch", ctypes.c_void_p)]


def steady_step(model: Transformer, cache: KVCache) -> SteadyStep:
    """What a cache decodes its steady tokens with (transformer_decode._steady_ready says when): a
    NativeStep where the kernels are built and do what this model does, else a SteadyStep."""
    if native.enabled() and model.config.norm in NORMS and cache.plan.blocks[0].activation in ACTIVATIONS:
        return NativeStep(model, cache, native.library())
    return SteadyStep(model, cache)


class NativeStep(SteadyStep):
    """SteadyStep's token in one call of native_kernels.c's decode_step. It keeps SteadyStep's
    rotation rows and its check of the mode it may run in (ready()), and hands the C code, once,
    the addresses of the plan's weights, the ring (written in place) and a scratch buffer; a token
    passes its embedding row, rotation, slot and a new logits row."""

    def __init__(self, model: Transformer, cache: KVCache, lib: ctypes.CDLL):
        super().__init__(model, cache)
        H, Hkv, D = heads(model)
        C, W = model.config.n_embd, cache.window
        plan = cache.plan
        F = plan.blocks[0].up_weight_t.size(1)
        self.V = plan.head_t.size(1)
        # Every tensor the C code reads stays alive with this step; all are contiguous float32
        # (the plan's copies, the model's norms and embedding: _steady_ready checks the dtype).
        self.held = [self.embed_weight.detach().contiguous()]
        self.scratch = torch.empty(C + max(C, F) + (H + 2 * Hkv) * D + H * D + W)

        def address(t: torch.Tensor | None) -> int | None:
            if t is None:
                return None
            t = t.detach().contiguous()
            self.held.append(t)
            return t.data_ptr()

        self.layer_array = (_Layer * len(plan.blocks))()
        for layer, p, (keys, values) in zip(self.layer_array, plan.blocks, cache.layers):
            for name in LAYER_FIELDS:
                setattr(layer, name, address(getattr(p, name)))
            layer.keys, layer.values = keys.data_ptr(), values.data_ptr()  # (1, Hkv, W, D) each
        self.model_struct = _Model(
            n_layer=len(plan.blocks), C=C, H=H, Hkv=Hkv, D=D, W=W, F=F, V=self.V,
            norm=NORMS[model.config.norm], activation=ACTIVATIONS[plan.blocks[0].activation],
            eps=model.config.norm_eps, layers=self.layer_array, final_w=address(self.final_norm[0]),
            final_b=address(self.final_norm[1]), head=address(plan.head_t), scratch=self.scratch.data_ptr())
        self.decode_step, self.model_ref = lib.decode_step, ctypes.byref(self.model_struct)
        self.embedding, self.row_bytes = self.held[0].data_ptr(), C * self.held[0].element_size()

    def __call__(self, idx: int, cache: KVCache) -> torch.Tensor:
        """Token idx -> logits (1, V), advancing the cache, as SteadyStep.__call__."""
        count = cache.count
        logits = torch.empty(1, self.V)
        self.decode_step(self.model_ref, self.embedding + idx * self.row_bytes, self._rotation(cache.pos).data_ptr(),
                         count % self.window, min(count + 1, self.window), logits.data_ptr())
        cache.count = count + 1
        cache.pos += 1
        return logits
