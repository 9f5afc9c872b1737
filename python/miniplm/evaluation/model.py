"""The model under evaluation: loaded from a path (HF directory or GGUF file, exactly as
``miniplm score`` loads it) or handed over as a ``(model, tokenizer)`` pair, with the
ignore id of the held-out NLL and the tokenizer the text evaluators need."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from miniplm._deps import require
from miniplm.dataset_meta import dataset_tokenizer_file
from miniplm.errors import InputError
from miniplm.models import (
    load_model,
    model_tokenizer,
    resolve_device,
    resolve_dtype,
    resolve_ignore_id,
    split_spec,
)

if TYPE_CHECKING:  # mypy checks the real torch; importing this module stays light
    import torch

# A path, or an already-loaded (transformers model, tokenizer or None) pair.
ModelLike = Union[str, "os.PathLike[str]", tuple[Any, Any]]


@dataclass
class EvalModel:
    """A causal LM ready for evaluation and what the results record about it."""

    spec: str
    model: Any  # transformers PreTrainedModel, in eval mode
    tokenizer: Any | None  # transformers tokenizer; None: token-id evaluation only
    tokenizer_from: str | None
    ignore_id: int | None
    ignore_id_from: str
    fingerprint: str | None
    device: str
    dtype: str
    # The vocabulary of the model's own tokenizer (None: it has none), for the check
    # that a token dataset was written with it.
    own_vocab: dict[str, int] | None = None

    @property
    def max_positions(self) -> int | None:
        n = getattr(self.model.config, "max_position_embeddings", None)
        return None if n is None else int(n)

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.spec,
            "fingerprint": self.fingerprint,
            "architecture": type(self.model).__name__,
            "num_parameters": int(sum(p.numel() for p in self.model.parameters())),
            "vocab_size": self.vocab_size,
            "tokenizer": self.tokenizer_from,
            "ignore_id": self.ignore_id,
            "ignore_id_from": self.ignore_id_from,
            "device": self.device,
            "dtype": self.dtype,
        }

    def require_tokenizer(self, what: str) -> Any:
        if self.tokenizer is None:
            raise InputError(
                f"{self.spec}: {what} needs a tokenizer and the model has none; "
                "pass --tokenizer (a tokenizer directory, a tokenizer.json or a .gguf file)"
            )
        return self.tokenizer


def load_tokenizer(spec: str, trust_remote_code: bool = False) -> Any:
    """A transformers tokenizer from a directory, a ``tokenizer.json`` file or a .gguf."""
    transformers = require("transformers")
    p = Path(spec)
    if p.is_file() and p.suffix == ".json":
        return transformers.PreTrainedTokenizerFast(tokenizer_file=os.fspath(p))
    directory, gguf = split_spec(spec)
    tok = model_tokenizer(directory, gguf, trust_remote_code)
    if tok is None:
        raise InputError(f"{spec}: no tokenizer files (tokenizer.json, tokenizer_config.json, ...)")
    return tok


def _dataset_tokenizer(data: str | None) -> str | None:
    """The ``tokenizer.json`` saved beside a tokenized dataset, if any."""
    f = None if data is None else dataset_tokenizer_file(data)
    return None if f is None else os.fspath(f)


def load_eval_model(
    model: ModelLike,
    *,
    device: str = "auto",
    dtype: str | None = None,
    tokenizer: Any = None,
    need_tokenizer: bool = False,
    data: str | None = None,
    ignore_id: int | None = None,
    trust_remote_code: bool = False,
) -> EvalModel:
    """Load ``model`` (a path, or a ``(model, tokenizer)`` pair used where it is).

    The text tokenizer is ``tokenizer`` (a path or a tokenizer object) when given, else
    the model's own, else (``need_tokenizer``) the ``tokenizer.json`` beside ``data``.
    The held-out ignore id follows ``miniplm score``: ``ignore_id``, else the model's own
    tokenizer's pad token, else the config's pad / eos id."""
    tok_override = tokenizer
    if isinstance(model, tuple):
        if len(model) != 2:
            raise InputError("model must be a path or a (model, tokenizer) pair")
        obj, own_tok = model
        if not hasattr(obj, "get_output_embeddings") or not hasattr(obj, "config"):
            raise InputError(f"{type(obj).__name__} is not a transformers causal LM")
        obj.eval().requires_grad_(False)
        ignore, origin = resolve_ignore_id(own_tok, obj.config, ignore_id)
        param: torch.nn.Parameter = next(obj.parameters())
        em = EvalModel(
            spec=f"<in-memory {type(obj).__name__}>",
            model=obj,
            tokenizer=own_tok,
            tokenizer_from=None if own_tok is None else "given with the model",
            ignore_id=ignore,
            ignore_id_from=origin,
            fingerprint=None,
            device=str(param.device),
            dtype=str(param.dtype).removeprefix("torch."),
            own_vocab=None if own_tok is None else own_tok.get_vocab(),
        )
    else:
        spec = os.fspath(model)
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype or "auto", dev)
        loaded = load_model(
            spec,
            device=dev,
            dtype=torch_dtype,
            ignore_id=ignore_id,
            trust_remote_code=trust_remote_code,
        )
        own_tok = None
        if need_tokenizer and tok_override is None:
            directory, gguf = split_spec(spec)
            own_tok = model_tokenizer(directory, gguf, trust_remote_code)
        em = EvalModel(
            spec=spec,
            model=loaded.model,
            tokenizer=own_tok,
            tokenizer_from=None if own_tok is None else spec,
            ignore_id=loaded.ignore_id,
            ignore_id_from=loaded.ignore_id_from,
            fingerprint=loaded.fingerprint,
            device=dev,
            dtype=str(torch_dtype).removeprefix("torch."),
            own_vocab=loaded.tokenizer_vocab,
        )
    if tok_override is not None:
        if isinstance(tok_override, (str, os.PathLike)):
            em.tokenizer = load_tokenizer(os.fspath(tok_override), trust_remote_code)
            em.tokenizer_from = os.fspath(tok_override)
        else:
            em.tokenizer = tok_override
            em.tokenizer_from = f"<in-memory {type(tok_override).__name__}>"
    elif need_tokenizer and em.tokenizer is None:
        fallback = _dataset_tokenizer(data)
        if fallback is not None:
            em.tokenizer = load_tokenizer(fallback)
            em.tokenizer_from = fallback
    return em


def prefix_token_id(tokenizer: Any, config: Any) -> int:
    """The token that stands in for an empty context: lm-eval's ``HFLM.prefix_token_id``
    (the tokenizer's BOS, else its EOS), falling back to the model config's BOS / EOS."""
    for source in (tokenizer, config):
        for name in ("bos_token_id", "eos_token_id"):
            v = getattr(source, name, None)
            if isinstance(v, (list, tuple)):
                v = v[0] if v else None
            if v is not None:
                return int(v)
    raise InputError(
        "an empty context is scored after the BOS (or EOS) token, and neither the "
        "tokenizer nor the model config defines one"
    )
