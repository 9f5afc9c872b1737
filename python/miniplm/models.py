"""Loading a causal LM (for scoring, training and evaluation alike): a local Hugging Face
directory or a GGUF file, the pad id that decides which positions are scored, a
fingerprint of the weights, and the check that its tokenizer is the dataset's."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniplm import _core
from miniplm._deps import require
from miniplm._safetensors import check_safetensors
from miniplm.dataset_meta import dataset_tokenizer_file
from miniplm.errors import InputError

if TYPE_CHECKING:  # torch is imported where it is used (importing this module stays light)
    import torch

_DTYPES = ("auto", "float32", "bfloat16", "float16")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass
class LoadedModel:
    """A model ready for scoring and what the run manifest records about it."""

    spec: str
    model: Any  # transformers PreTrainedModel
    ignore_id: int | None
    ignore_id_from: str
    fingerprint: str
    vocab_size: int
    max_positions: int | None
    tokenizer_vocab: dict[str, int] | None

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.spec,
            "fingerprint": self.fingerprint,
            "architecture": type(self.model).__name__,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "vocab_size": self.vocab_size,
        }


def model_device(model: Any) -> torch.device:
    """The device of ``model``'s (first) parameters: where its inputs must go."""
    device: torch.device = next(model.parameters()).device
    return device


def split_spec(spec: str) -> tuple[str, str | None]:
    """``(directory, gguf file name or None)`` of a model path."""
    p = Path(spec)
    if p.is_file() and p.suffix == ".gguf":
        return str(p.parent), p.name
    if p.is_dir():
        return str(p), None
    if not p.exists():
        raise FileNotFoundError(
            f"{spec}: no such model (expected a Hugging Face model directory or a .gguf file)"
        )
    raise InputError(
        f"{spec}: not a model (expected a Hugging Face model directory or a .gguf file)"
    )


def model_fingerprint(spec: str) -> str:
    """Hash of the config and the quick fingerprints of the weight files: changes when
    the model does, costs a few reads however large the weights are."""
    directory, gguf = split_spec(spec)
    h = hashlib.sha256()
    if gguf is not None:
        files = [Path(directory) / gguf]
    else:
        d = Path(directory)
        files = sorted(
            f for f in d.iterdir() if f.name == "config.json" or f.suffix in _WEIGHT_SUFFIXES
        )
        if not any(f.suffix in _WEIGHT_SUFFIXES for f in files):
            raise InputError(
                f"{spec}: no weight files (*.safetensors, *.bin) in the model directory"
            )
    for f in files:
        h.update(f.name.encode())
        h.update(_core.file_fingerprint(os.fspath(f)).encode())
    return "sha256:" + h.hexdigest()[:32]


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """The torch dtype for ``dtype`` (``auto``: bfloat16 on CUDA, float32 elsewhere)."""
    th = require("torch")
    if dtype not in _DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        auto: torch.dtype = th.bfloat16 if device.startswith("cuda") else th.float32
        return auto
    named: torch.dtype = getattr(th, dtype)
    return named


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda:<local rank>`` when CUDA is available, else ``cpu``; ``cuda``
    -> ``cuda:<local rank>`` (under torchrun every rank its own GPU, not all on cuda:0)."""
    torch = require("torch")
    local = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if device == "auto":
        return local if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    return local if device == "cuda" else device


# The special tokens a GGUF file names in its own metadata, by transformers' attribute.
_GGUF_SPECIALS = {
    "eos_token": "tokenizer.ggml.eos_token_id",
    "bos_token": "tokenizer.ggml.bos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


def gguf_special_ids(path: str | os.PathLike[str]) -> dict[str, int]:
    """The special token ids a GGUF file's metadata names (``eos_token`` -> id, ...)."""
    gguf = require("gguf")
    try:
        fields = gguf.GGUFReader(os.fspath(path)).fields
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable GGUF file: {e}") from e
    ids = {}
    for attr, key in _GGUF_SPECIALS.items():
        f = fields.get(key)
        if f is not None and f.data:
            ids[attr] = int(f.parts[f.data[0]][0])
    return ids


def gguf_tokenizer(path: str | os.PathLike[str], trust_remote_code: bool = False) -> Any:
    """transformers' tokenizer of a GGUF file, with its special tokens as the file's own
    metadata names them. transformers' conversion has not always agreed with the file
    (5.17 took SmolLM2's ``<|im_start|>`` for its EOS, the file says ``<|im_end|>``), and the
    EOS decides every document boundary of a corpus."""
    transformers = require("transformers")
    p = Path(path)
    tok = transformers.AutoTokenizer.from_pretrained(
        str(p.parent), gguf_file=p.name, trust_remote_code=trust_remote_code
    )
    size = len(tok)
    for attr, i in gguf_special_ids(p).items():
        if not 0 <= i < size:
            raise InputError(f"{p}: metadata {_GGUF_SPECIALS[attr]} = {i} is not in its {size} ids")
        token = tok.convert_ids_to_tokens(i)
        if getattr(tok, attr, None) != token:
            setattr(tok, attr, token)
    return tok


def model_tokenizer(directory: str, gguf: str | None, trust_remote_code: bool) -> Any:
    """The model's own tokenizer, or None when the directory has none."""
    if gguf is not None:
        return gguf_tokenizer(Path(directory) / gguf, trust_remote_code)
    if not any((Path(directory) / f).exists() for f in TOKENIZER_FILES):
        return None
    transformers = require("transformers")
    return transformers.AutoTokenizer.from_pretrained(
        directory, trust_remote_code=trust_remote_code
    )


def _first(x: Any) -> int | None:
    if isinstance(x, (list, tuple)):
        return int(x[0]) if x else None
    return None if x is None else int(x)


def resolve_ignore_id(tokenizer: Any, config: Any, override: int | None) -> tuple[int | None, str]:
    """The id whose *input* positions are not scored, and where it came from: ``--ignore-id``,
    else the tokenizer's pad token, else the config's ``pad_token_id``, else its
    ``eos_token_id`` (the original MiniPLM rule: ``mask = input_ids != pad_id``)."""
    if override is not None:
        return (None if override < 0 else override), "--ignore-id"
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id), "tokenizer pad token"
    pad = _first(getattr(config, "pad_token_id", None))
    if pad is not None:
        return pad, "config pad_token_id"
    eos = _first(getattr(config, "eos_token_id", None))
    if eos is not None:
        return eos, "config eos_token_id"
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id), "tokenizer eos token"
    return None, "none (every position is scored)"


def load_model(
    spec: str,
    *,
    device: str,
    dtype: Any,
    ignore_id: int | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load ``spec`` (HF directory or .gguf) in eval mode on ``device``."""
    transformers = require("transformers")
    directory, gguf = split_spec(spec)
    if gguf is None:
        check_safetensors(directory)  # a truncated file names itself
    fingerprint = model_fingerprint(spec)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": dtype}
    if gguf is not None:
        kwargs["gguf_file"] = gguf
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{spec}: cannot load a causal LM: {e}") from e
    model.eval().requires_grad_(False).to(device)
    tokenizer = model_tokenizer(directory, gguf, trust_remote_code)
    ignore, origin = resolve_ignore_id(tokenizer, model.config, ignore_id)
    vocab = tokenizer.get_vocab() if tokenizer is not None else None
    return LoadedModel(
        spec=spec,
        model=model,
        ignore_id=ignore,
        ignore_id_from=origin,
        fingerprint=fingerprint,
        vocab_size=int(model.get_output_embeddings().weight.shape[0]),
        max_positions=getattr(model.config, "max_position_embeddings", None),
        tokenizer_vocab=vocab,
    )


def _vocab(tokenizer_json: Path) -> dict[str, int]:
    tok = require("tokenizers").Tokenizer.from_file(os.fspath(tokenizer_json))
    vocab: dict[str, int] = tok.get_vocab(with_added_tokens=True)
    return vocab


def check_tokenizer(spec: str, vocab: dict[str, int] | None, data_dir: str) -> None:
    """Scores, training and held-out losses are only meaningful when the model reads the
    ids the corpus was written with: refuse a model whose tokenizer differs from the one
    saved beside the dataset, or that has none to compare (``--allow-tokenizer-mismatch``
    skips this check; a dataset without a tokenizer has nothing to check against)."""
    tok_file = dataset_tokenizer_file(data_dir)
    if tok_file is None:
        return
    if vocab is None:
        raise InputError(
            f"{spec}: no tokenizer comes with the model (none of {', '.join(TOKENIZER_FILES)}), "
            f"so it cannot be checked against {tok_file}, which the dataset was tokenized "
            "with; copy that tokenizer into the model directory, or pass "
            "--allow-tokenizer-mismatch (allow_tokenizer_mismatch=True) to go on unchecked"
        )
    want = _vocab(tok_file)
    if vocab != want:
        diff = len(set(want.items()) ^ set(vocab.items()))
        raise InputError(
            f"{spec}: its tokenizer differs from {tok_file}, which the dataset was "
            f"tokenized with ({diff} vocabulary entries differ); re-tokenize the corpus "
            "with this model's tokenizer, or pass --allow-tokenizer-mismatch"
        )


def check_same_tokenizer(models: list[LoadedModel], data_dir: str) -> None:
    """``check_tokenizer`` for each of ``models``."""
    for m in models:
        check_tokenizer(m.spec, m.tokenizer_vocab, data_dir)
