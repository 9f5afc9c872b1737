"""Per-instance next-token NLL without materialising the [batch, length, vocab] logits:
the decoder's hidden states are taken once and the head + log-softmax run over chunks of
positions (a 152k vocabulary x 1024 positions would be 600 MB of fp32 logits per
sequence), with no host sync: the scored positions are masked, not gathered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from miniplm._deps import require
from miniplm._logits import LogitRule
from miniplm.errors import InputError

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
    from torch import Tensor
else:
    torch = require("torch")

# fp32 logits bytes one chunk may hold (plus the softmax temporaries of the same size).
_LOGIT_BYTES = 256 << 20


def default_chunk_tokens(vocab_size: int) -> int:
    """Positions per head chunk so that a chunk's fp32 logits stay near 256 MiB."""
    return max(16, _LOGIT_BYTES // (4 * max(1, vocab_size)))


class ChunkedScorer:
    """Scores padded batches with one causal LM: ``nll_sum`` (float64 accumulation of the
    fp32 per-token NLL) and ``n_scored`` per row.

    Position t of a row (predicting token t+1) is scored when t + 1 < length and the
    *input* token at t is not ``ignore_id``. Batches are right-padded and run without an
    attention mask: under causal attention a real position never sees a later (padding)
    position, so padding cannot change a score, and the fused causal kernels apply."""

    def __init__(self, model: Any, ignore_id: int | None, chunk_tokens: int | None = None):
        # `model`: a transformers causal LM (or a wrapper of one); its get_decoder() and
        # get_output_embeddings() are not annotated well enough to type it.
        self.model = model
        self.decoder = model.get_decoder()
        head = model.get_output_embeddings()
        if self.decoder is None or self.decoder is model or head is None:
            raise InputError(
                f"{type(model).__name__}: cannot split into decoder and output head; "
                "only standard causal LMs (Llama, Qwen2, Mistral, ...) are supported"
            )
        # Scale / soft-cap after the head, as the model's forward does (the rule the
        # training loss uses too).
        self.rule = LogitRule.of(model.config)
        self.ignore_id = ignore_id
        self.head: torch.nn.Module = head
        self.vocab_size = int(head.weight.shape[0])
        self.chunk_tokens = chunk_tokens or default_chunk_tokens(self.vocab_size)

    def logits(self, hidden: Tensor) -> Tensor:
        return self.rule.apply(self.head(hidden).float())

    def scored_mask(self, input_ids: Tensor, lengths: Tensor) -> Tensor:
        """[B, T-1] bool: which positions are scored."""
        inputs = input_ids[:, :-1]
        pos = torch.arange(inputs.shape[1], device=inputs.device)
        mask = pos[None, :] < (lengths[:, None] - 1)
        if self.ignore_id is not None:
            mask &= inputs != self.ignore_id
        return mask

    def score(self, input_ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``input_ids`` [B, T] int64 and ``lengths`` [B] on the model's device ->
        (nll_sum [B] float64, n_scored [B] int64), on that device."""
        with torch.inference_mode():
            return self._score(input_ids, lengths)

    def _score(self, input_ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        b = input_ids.shape[0]
        dev = input_ids.device
        if input_ids.shape[1] < 2:
            zeros = torch.zeros(b, dtype=torch.float64, device=dev)
            return zeros, torch.zeros(b, dtype=torch.int64, device=dev)
        mask = self.scored_mask(input_ids, lengths)
        hidden: Tensor = self.decoder(
            input_ids=input_ids[:, :-1], use_cache=False
        ).last_hidden_state
        # Every position goes through the head (batches are sorted by length: little
        # padding), so nothing waits for the device to learn how many are scored (a
        # `nonzero` would), and each row's sum is one reduction of fixed shape:
        # deterministic, where an `index_add_` of float64 is atomic and not on CUDA.
        flat = hidden.reshape(-1, hidden.shape[-1])
        targets = input_ids[:, 1:].reshape(-1)
        nll = torch.empty(flat.shape[0], dtype=torch.float32, device=dev)
        for s in range(0, flat.shape[0], self.chunk_tokens):
            e = s + self.chunk_tokens
            logits = self.logits(flat[s:e])
            nll[s:e] = torch.logsumexp(logits, -1) - logits.gather(1, targets[s:e, None])[:, 0]
        nll_sum = torch.where(mask, nll.view(mask.shape).double(), 0.0).sum(1)
        return nll_sum, mask.sum(1)
