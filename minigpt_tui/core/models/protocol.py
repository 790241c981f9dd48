"""LanguageModel, what every model family implements (Transformer, RNNLanguageModel,
ConvLanguageModel): the one type that sampling, chat sessions, loading and evaluation hold a
model as.

A module of its own that imports none of the families, so a family's module may import it
without an import circle through the package's __init__ (which imports the families).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol, runtime_checkable

from minigpt_tui.core.config import ModelConfig

if TYPE_CHECKING:
    import torch


@runtime_checkable
class LanguageModel(Protocol):
    """forward(tokens, state) -> (logits, state). Shape names: B batch, T time, V vocabulary.

    A state is the family's own object, opaque to callers: a Transformer's key/value cache, an
    RNN's hidden state, a CNN's queues of past layer inputs. Pass back what the last call returned.

    Every family is a torch nn.Module; the protocol also names the few Module methods callers
    use on a model (calling it, its parameters, train/eval, moving it, its weights), so that
    everything done to a model is done through this type. A model wrapped for training (DDP,
    torch.compile) is an nn.Module but not a LanguageModel: core.models.unwrap gives the model.
    """

    config: ModelConfig
    vocab_size: int
    family: str  # "transformer" | "gru" | "lstm" | "cnn"
    training: bool  # (nn.Module's: whether dropout is on)

    @property
    def receptive_field(self) -> int | None:
        """How many trailing tokens determine the next-token logits exactly (a
        Transformer's attention and a CNN's convolutions reach back only so far), or None
        when the state carries everything read so far (an RNN)."""

    def new_state(self) -> Any:
        """The state before any token: the next forward reads a prompt from scratch."""

    def forward(self, idx: torch.Tensor, state: Any = None, last: bool = False) -> tuple[torch.Tensor, Any]:
        """idx (B, T) -> logits (B, T, V) and the state after the last token.
        state=None processes the sequence on its own (training). last=True: the logits of the
        last position only, (B, 1, V) (a sampler reading a prompt; the head is skipped elsewhere)."""

    def __call__(self, idx: torch.Tensor, state: Any = None, last: bool = False) -> tuple[torch.Tensor, Any]:
        """forward, through nn.Module's call (what callers write: model(idx, state))."""

    def decode_step(self, token: int, state: Any) -> tuple[torch.Tensor, Any]:
        """Feed one token of a single sequence -> logits (1, V), new state. The same
        logits as forward, written for speed: the sampler's hot path."""

    # ---- nn.Module's, as callers use them --------------------------------------------------
    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def train(self, mode: bool = True) -> LanguageModel: ...

    def eval(self) -> LanguageModel: ...

    def to(self, *args: Any, **kwargs: Any) -> LanguageModel: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...
