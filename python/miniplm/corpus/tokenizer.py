"""The tokenizer a corpus is written with: any Hugging Face fast tokenizer (a directory,
a ``tokenizer.json`` file, or the tokenizer inside a ``.gguf`` file), reduced to what
tokenization needs: the ``tokenizers.Tokenizer`` as JSON (so worker processes can rebuild
it), the EOS token, and the break table of the packer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from miniplm._deps import require
from miniplm.corpus.packing import EOS, NEWLINE, SENTENCE
from miniplm.dataset_meta import json_type
from miniplm.errors import InputError
from miniplm.models import gguf_tokenizer

# A sentence end: '.', '!' or '?', then possibly closing quotes / brackets, then spaces.
_CLOSERS = "\"'\u201d\u2019\u00bb)]"


@dataclass
class TokenizerInfo:
    """A loaded tokenizer: ``backend`` is the ``tokenizers.Tokenizer`` (truncation and
    padding off), ``json`` its serialisation."""

    spec: str
    backend: Any
    json: str
    eos_id: int
    eos_token: str
    vocab_size: int  # number of ids, added tokens included

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "vocab_size": self.vocab_size,
            "eos_token": self.eos_token,
            "eos_id": self.eos_id,
        }

    def break_table(self) -> npt.NDArray[np.uint8]:
        return break_table(self.backend, self.eos_id, self.vocab_size)


def _token_text(value: Any) -> str | None:
    """A special-token entry of tokenizer_config.json: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _config_entry(config: Path, key: str) -> Any:
    """Entry ``key`` of a ``tokenizer_config.json`` (None where it has none)."""
    try:
        data = json.loads(config.read_bytes())
    except ValueError as e:  # UnicodeDecodeError included
        raise InputError(f"{config}: not a JSON file ({e})") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{config}: a JSON {json_type(data)}, expected an object (a Hugging Face "
            "tokenizer_config.json)"
        )
    return data.get(key)


def load_tokenizer(
    spec: Any, eos_id: int | None = None, eos_token: str | None = None
) -> TokenizerInfo:
    """Load ``spec``: a Hugging Face tokenizer directory, a ``tokenizer.json`` file, a
    ``.gguf`` file, or an already loaded ``tokenizers.Tokenizer`` / transformers fast
    tokenizer. The EOS is the tokenizer's ``eos_token`` unless ``eos_id`` (an id) or
    ``eos_token`` (a token's text, e.g. ``<|endoftext|>`` where a chat-tuned tokenizer's
    own EOS is ``<|im_end|>``) chooses another."""
    if eos_id is not None and eos_token is not None:
        raise InputError("--eos-id and --eos-token: give one or the other")
    chosen, eos_token = eos_token, None  # from here on: the tokenizer's own EOS
    tokenizers = require("tokenizers")
    if isinstance(spec, (str, os.PathLike)):
        name = os.fspath(spec)
        path = Path(name)
        if not path.exists():
            raise FileNotFoundError(
                f"{name}: no such tokenizer (expected a Hugging Face tokenizer directory, "
                "a tokenizer.json file or a .gguf file)"
            )
        if path.is_file() and path.suffix == ".json":
            try:
                backend = tokenizers.Tokenizer.from_file(name)
            except Exception as e:
                raise InputError(f"{name}: not a tokenizers JSON file: {e}") from e
            config = path.parent / "tokenizer_config.json"
            if config.is_file():
                eos_token = _token_text(_config_entry(config, "eos_token"))
        elif path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
            hf = _load_transformers(path)
            backend, eos_token = hf.backend_tokenizer, hf.eos_token
        else:
            raise InputError(
                f"{name}: not a tokenizer (expected a directory, a tokenizer.json file "
                "or a .gguf file)"
            )
    elif isinstance(spec, tokenizers.Tokenizer):
        name, backend = "<tokenizers.Tokenizer>", spec
    elif hasattr(spec, "backend_tokenizer"):
        name = getattr(spec, "name_or_path", "") or f"<{type(spec).__name__}>"
        backend, eos_token = spec.backend_tokenizer, spec.eos_token
    else:
        raise InputError(f"not a tokenizer: {type(spec).__name__}")

    if not isinstance(spec, (str, os.PathLike)):
        backend = tokenizers.Tokenizer.from_str(backend.to_str())  # leave the caller's alone
    backend.no_truncation()
    backend.no_padding()
    vocab: dict[str, int] = backend.get_vocab(with_added_tokens=True)
    size = max(backend.get_vocab_size(with_added_tokens=True), max(vocab.values(), default=-1) + 1)
    if eos_id is not None:
        token = backend.id_to_token(eos_id) if 0 <= eos_id < size else None
        if token is None:
            raise InputError(f"--eos-id {eos_id}: no such token in {name} ({size} ids)")
        eos_token = token
    else:
        if chosen is not None:
            eos_token = chosen
        if not eos_token:
            raise InputError(
                f"{name}: the tokenizer has no EOS token (eos_token); pass --eos-token or "
                "--eos-id to choose the token appended to every document"
            )
        found = backend.token_to_id(eos_token)
        if found is None:
            which = "the chosen EOS token (--eos-token)" if chosen is not None else "EOS token"
            raise InputError(f"{name}: {which} {eos_token!r} is not in the vocabulary")
        eos_id = int(found)
    return TokenizerInfo(
        spec=name,
        backend=backend,
        json=backend.to_str(),
        eos_id=int(eos_id),
        eos_token=str(eos_token),
        vocab_size=size,
    )


def _load_transformers(path: Path) -> Any:
    transformers = require("transformers")
    try:
        if path.suffix == ".gguf":
            tok = gguf_tokenizer(path)
        else:
            tok = transformers.AutoTokenizer.from_pretrained(os.fspath(path))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: cannot load a tokenizer: {e}") from e
    if getattr(tok, "backend_tokenizer", None) is None:
        raise InputError(
            f"{path}: no fast (Rust) tokenizer; save one with tokenizer.json "
            "(PreTrainedTokenizerFast)"
        )
    return tok


def break_table(backend: Any, eos_id: int, size: int) -> npt.NDArray[np.uint8]:
    """Class of every id for boundary packing: EOS, NEWLINE (its text ends with a newline,
    possibly followed by spaces), SENTENCE (ends with '.', '!' or '?', possibly followed by
    closing quotes and spaces) or NONE. Each id is decoded once, on its own."""
    texts = backend.decode_batch([[i] for i in range(size)], skip_special_tokens=False)
    table = np.zeros(size, dtype=np.uint8)
    for i, t in enumerate(texts):
        if t.rstrip(" \t").endswith(("\n", "\r")):
            table[i] = NEWLINE
        elif t.rstrip().rstrip(_CLOSERS).endswith((".", "!", "?")):
            table[i] = SENTENCE
    table[eos_id] = EOS
    return table
