"""The exact bytes behind each token id of a lossless tokenizer, or a clear refusal.

Export turns token ids back into source text. Only a byte-level BPE (GPT-2 / SmolLM2
style) without a normalizer maps every document to tokens whose bytes concatenate to the
document's own bytes; ``token_bytes`` checks that structurally on the corpus's
``tokenizer.json`` and returns the byte table, or raises ``InputError`` naming the
tokenizer and what it loses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from miniplm.errors import InputError

# Pre-tokenizers that only cut the text (no character is added, dropped or changed).
_CUTTING = {"Digits", "Punctuation", "Split"}


def byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte: printable bytes stand for
    themselves, the others for ``chr(256 + k)`` in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = dict.fromkeys(keep, 0)
    out: dict[str, int] = {chr(b): b for b in keep}
    extra = 0
    for b in range(256):
        if b not in chars:
            out[chr(256 + extra)] = b
            extra += 1
    return out


@dataclass
class TokenBytes:
    """``data[offsets[i]:offsets[i + 1]]`` are token ``i``'s bytes; ``bad[i]`` names why
    token ``i`` has none that can be trusted (empty when it does)."""

    data: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]
    bad: dict[int, str]


def _pre_tokenizer_loss(pre: Any) -> str | None:
    """Why this pre-tokenizer is not lossless, or None; it must hold one ByteLevel."""
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    levels = 0
    for p in parts:
        kind = p.get("type")
        if kind == "ByteLevel":
            levels += 1
            if p.get("add_prefix_space"):
                return "its ByteLevel pre-tokenizer adds a space before every document"
        elif kind not in _CUTTING:
            return f"its {kind} pre-tokenizer is not byte-level (it may drop or change text)"
        elif str(p.get("behavior", "")).lower() == "removed":
            return f"its {kind} pre-tokenizer removes the text it splits on"
    if levels != 1:
        return "it has no ByteLevel pre-tokenizer (tokens are not bytes of the text)"
    return None


def missing_bytes(tokenizer_json: str) -> bytes | None:
    """The bytes a byte-level BPE has no token for, in byte order (text holding one is
    dropped or unknown at tokenize time), or None when it is not a byte-level BPE.
    SmolLM2's lacks 21: 13 that valid UTF-8 never holds, 0xf1, 0xf2 and six controls."""
    spec = json.loads(tokenizer_json)
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or _pre_tokenizer_loss(spec.get("pre_tokenizer") or {}):
        return None
    return bytes(_missing(model.get("vocab") or {}))


def _missing(vocab: dict[str, int]) -> list[int]:
    """The bytes, in order, whose byte-level character ``vocab`` has no token for."""
    return sorted(b for c, b in byte_alphabet().items() if c not in vocab)


def token_bytes(
    tokenizer_json: str,
    name: str,
    normalized: int | None = None,
    unencodable: int | None = None,
) -> TokenBytes:
    """The byte table of the tokenizer serialised as ``tokenizer_json`` (``name`` is how
    errors call it). Raises ``InputError`` when the tokenizer does not keep every byte.
    ``normalized``: how many documents its normalizer changed at tokenize time (None:
    not known); a normalizer that changed none (Qwen's NFC on NFC text) loses nothing.
    ``unencodable``: how many documents held a byte its vocabulary lacks (None: not
    known); a vocabulary without some byte tokens loses nothing on text without them."""
    spec = json.loads(tokenizer_json)
    model = spec.get("model") or {}

    def lossy(what: str) -> InputError:
        return InputError(
            f"tokenizer {name} is not lossless: {what}; export needs a byte-level BPE "
            "without a normalizer to give the source text back byte for byte"
        )

    if spec.get("normalizer") is not None and normalized != 0:
        kind = spec["normalizer"].get("type", "?")
        changed = "" if normalized is None else f" (it changed {normalized} document(s))"
        raise lossy(f"its {kind} normalizer changes the text before tokenizing{changed}")
    if model.get("type") != "BPE":
        raise lossy(f"its model is {model.get('type')}, not byte-level BPE")
    why = _pre_tokenizer_loss(spec.get("pre_tokenizer") or {"type": "none"})
    if why is not None:
        raise lossy(why)
    alphabet = byte_alphabet()
    vocab: dict[str, int] = model.get("vocab") or {}
    missing = _missing(vocab)
    if missing and unencodable != 0:
        held = (
            "the corpus was tokenized before tokenize recorded how many documents hold "
            "them (tokenize it again with this version)"
            if unencodable is None
            else f"{unencodable} document(s) of the corpus hold one"
        )
        raise lossy(
            f"its vocabulary lacks {len(missing)} of the 256 byte tokens (first: byte "
            f"0x{missing[0]:02x}), so text holding them is dropped or unknown, and {held}"
        )
    pieces: dict[int, bytes] = {}
    bad: dict[int, str] = {}
    for token, i in vocab.items():
        try:
            pieces[i] = bytes(alphabet[c] for c in token)
        except KeyError:
            bad[i] = f"vocabulary entry {token!r} is not byte-level"
    for added in spec.get("added_tokens") or []:
        i = int(added["id"])
        content = str(added["content"])
        bad.pop(i, None)
        if added.get("lstrip") or added.get("rstrip"):
            bad[i] = f"added token {content!r} absorbs the whitespace beside it"
        pieces[i] = content.encode()
    size = max([*pieces, *bad, -1]) + 1
    lengths = np.zeros(size, dtype=np.int64)
    for i, b in pieces.items():
        lengths[i] = len(b)
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.frombuffer(b"".join(pieces.get(i, b"") for i in range(size)), dtype=np.uint8)
    for i in range(size):
        if i not in pieces and i not in bad:
            bad[i] = "no token has this id"
    return TokenBytes(data, offsets, bad)
