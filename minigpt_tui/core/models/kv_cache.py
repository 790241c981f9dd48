"""A Transformer's key/value cache: per-layer ring buffers of the last W tokens' rotated keys and values.

transformer_decode.py decodes with it (and fills `plan` and `steady`, the weights and the
prepared step it decodes with); transformer.py's forward fills it from a prompt (`store`).
Shape names as in transformer.py: B batch, H heads, D head size, W window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from minigpt_tui.core.models.decode_plan import DecodeWeights
    from minigpt_tui.core.models.steady_decode import SteadyStep


def ring_buffers(B: int, H: int, slots: int, D: int, key_dtype: torch.dtype, value_dtype: torch.dtype,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's zeroed keys and values, each (B, H, slots, D). Of one dtype they are the two
    halves of one storage, values right after keys, so a token's key and value, adjacent in the
    qkv row, go into their slot with one copy (steady_decode.SteadyStep). They are tensors of
    their own on that storage, not views of a (2, ...) tensor: autograd refuses in-place writes
    into views made under no_grad once grad mode is on, and a cache may be filled in one mode
    and written in the other."""
    if key_dtype == value_dtype:
        n = B * H * slots * D
        storage = torch.zeros(2 * n, dtype=key_dtype, device=device).untyped_storage()
        keys = torch.empty(0, dtype=key_dtype, device=device).set_(storage, 0, (B, H, slots, D))
        values = torch.empty(0, dtype=key_dtype, device=device).set_(storage, n, (B, H, slots, D))
        return keys, values
    return (torch.zeros(B, H, slots, D, dtype=key_dtype, device=device),
            torch.zeros(B, H, slots, D, dtype=value_dtype, device=device))


def interleave_order(head_size: int) -> torch.Tensor:
    """Index that reorders a head's dimensions from (x1_0..x1_{D/2-1}, x2_0..) to pairs (x1_0, x2_0, x1_1, ...)."""
    half = torch.arange(head_size // 2)
    return torch.stack((half, half + head_size // 2), dim=1).flatten()


class KVCache:
    """Per-layer ring buffers holding the rotated keys and values of the last W tokens.

    Each layer's buffers, (B, H, slots, D), are allocated by the prefill (the model's
    forward, which calls `store`) for what the prompt needs: its length rounded up to
    a power of two, at least MIN_SLOTS, at most W. A write that would fall past the
    allocated slots first doubles them (`reserve`, copying what is held) until there
    are W; while count < W the ring has not wrapped, so the entries are slots
    0..count-1 in order and growing needs no reordering. (An imported model's window
    is its whole position table, 8192 for SmolLM2: 380 MB of float32 keys and values
    at once, for chats that mostly last a few hundred tokens.) Slot `count % W` is
    written next; once W entries exist that is the oldest one. A single query
    attends to every filled slot, and softmax attention does not care in which order
    the slots hold them, so the ring needs no reordering. Keys are stored in
    interleaved order (see the module docstring). `plan` holds the weights arranged
    for decoding, taken at the first decoded token, so a cache belongs to the weights
    it was filled with.
    """

    MIN_SLOTS = 256  # the fewest slots a prefill allocates (fewer only when W is smaller)

    def __init__(self, n_layer: int, window: int, keep_ids: bool = False):
        self.window = window
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer
        self.count = 0  # ring entries written per layer; the next write goes to count % W
        self.slots = 0  # slots allocated per layer: W once grown that far (see the class docstring)
        self.pos = 0  # absolute position of the next token
        self.plan: DecodeWeights | None = None
        # What decodes a token of one sequence once the buffers hold all W slots
        # (steady_decode.SteadyStep: views of the buffers, scratch rows); dropped whenever the
        # buffers are replaced (store, reserve, reset; a copy starts without one) and made again
        # by the next decoded token, as it is when the inference mode changes.
        self.steady: SteadyStep | None = None
        # A learned-position model's cache never wraps (pos <= W); it keeps the ids it holds,
        # (B, pos), which it reads again from position 0 when the positions run out.
        self.ids: torch.Tensor | None = None
        self.keep_ids = keep_ids

    @property
    def empty(self) -> bool:
        return self.pos == 0

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Keep a prompt's last W rotated keys and values (B, H, T, D) for `layer`, oldest in slot 0."""
        B, H, T, D = k.shape
        keep = min(T, self.window)
        self.slots = self._slots_for(keep)
        keys, values = ring_buffers(B, H, self.slots, D, k.dtype, v.dtype, k.device)
        order = interleave_order(D).to(k.device)
        keys[:, :, :keep], values[:, :, :keep] = k[:, :, -keep:, order], v[:, :, -keep:]
        self.layers[layer] = (keys, values)
        self.steady = None

    def _slots_for(self, entries: int) -> int:
        """Slots to allocate for `entries`: a power of two, at least MIN_SLOTS, at most W."""
        return min(self.window, max(self.MIN_SLOTS, 1 << max(entries - 1, 0).bit_length()))

    def reserve(self, n: int) -> None:
        """Make room for n more entries before they are written: while fewer than W slots are
        allocated and count + n exceed them, every layer's buffers grow to twice their slots (or
        more, up to W), the entries held copied over (unwrapped: slots 0..count-1)."""
        need = self.count + n
        if need <= self.slots or self.slots >= self.window:
            return
        slots = min(self.window, max(2 * self.slots, self._slots_for(need)))
        held = self.count  # < slots <= W: never wrapped yet
        grown = []
        for keys, values in self.layers:
            bigger = _ring_like(keys, values, slots)
            for new, old in zip(bigger, (keys, values)):
                new[:, :, :held] = old[:, :, :held]
            grown.append(bigger)
        self.layers, self.slots = grown, slots
        self.steady = None

    def copy(self) -> "KVCache":
        """An independent copy (the ring is written in place by every decoded token): what a
        conversation keeps at a turn boundary so undo and branches need no recomputation.
        The decode plan is the weights' arrangement, shared, not copied."""
        twin = KVCache(len(self.layers), self.window, self.keep_ids)
        twin.layers = [None if kv is None else _copied(*kv) for kv in self.layers]
        twin.count, twin.pos, twin.plan, twin.ids = self.count, self.pos, self.plan, self.ids
        twin.slots = self.slots
        return twin

    def prefilled(self, idx: torch.Tensor) -> None:
        """Record that a prompt idx (B, T) was stored: the ring holds min(T, W) entries, so the
        next write goes to slot count % W, over the oldest entry once full."""
        length = idx.size(1)
        self.count = min(length, self.window)
        self.pos = length
        if self.keep_ids:
            self.ids = idx

    def read(self, idx: torch.Tensor) -> None:
        """Record that tokens idx (B, T) were decoded after the ones held."""
        self.count += idx.size(1)
        self.pos += idx.size(1)
        if self.keep_ids:
            self.ids = idx if self.ids is None else torch.cat((self.ids, idx), 1)

    def reset(self) -> None:
        """Empty again (the buffers are allocated anew by the next prefill)."""
        self.layers = [None] * len(self.layers)
        self.count = self.pos = self.slots = 0
        self.ids = None
        self.steady = None


def _ring_like(keys: torch.Tensor, values: torch.Tensor, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zeroed ring buffers (ring_buffers) of `slots` slots, shaped and typed as keys and values."""
    B, H, _, D = keys.shape
    return ring_buffers(B, H, slots, D, keys.dtype, values.dtype, keys.device)


def _copied(keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """New ring buffers (ring_buffers) holding what keys and values hold."""
    twin = _ring_like(keys, values, keys.size(2))
    for new, old in zip(twin, (keys, values)):
        new.copy_(old)
    return twin
