"""Model shapes: the MiniPLM paper's Qwen2-architecture students and reference model, its
cross-family Mamba-130M student, plus tiny presets that train on a CPU in seconds; and
building a config from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from miniplm._deps import require
from miniplm.errors import InputError

# hidden, ffn, layers, heads (head dim = hidden / heads; 1.2B: 1536 / 16 = 96).
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (64, 176, 2, 4),
    "mini": (128, 352, 4, 4),
    "small": (256, 704, 6, 8),
    "ref-104M": (512, 1408, 8, 8),
    "200M": (768, 2112, 12, 12),
    "300M": (768, 2112, 18, 12),
    "500M": (1024, 2816, 24, 16),
    "1.2B": (1536, 4224, 24, 16),
}
# Mamba: hidden, layers (state size 16, expand 2, conv 4: the mamba-130m shape).
MAMBA_PRESETS: dict[str, tuple[int, int]] = {
    "tiny": (64, 2),
    "mini": (128, 4),
    "small": (256, 6),
    "130M": (768, 24),
}
ARCHS = ("qwen2", "llama", "mamba")
# Every preset name, for --preset's choices; which ones an arch has: arch_presets.
PRESET_NAMES = tuple(dict.fromkeys([*PRESETS, *MAMBA_PRESETS]))


def arch_presets(arch: str) -> tuple[str, ...]:
    """The preset names ``arch`` has."""
    return tuple(MAMBA_PRESETS if arch == "mamba" else PRESETS)


def check_preset(
    name: str, arch: str, preset_key: str = "--preset", arch_key: str = "--arch"
) -> None:
    """Refuse an unknown ``arch`` or a preset ``arch`` does not have (the keys name the
    flags or config keys in the message)."""
    if arch not in ARCHS:
        raise InputError(f"{arch_key} {arch!r}: unknown (known: {', '.join(ARCHS)})")
    known = arch_presets(arch)
    if name not in known:
        raise InputError(
            f"{preset_key} {name!r}: unknown for {arch_key} {arch} (known: {', '.join(known)})"
        )


def preset_config(
    name: str,
    vocab_size: int,
    arch: str = "qwen2",
    max_positions: int = 4096,
    eos_token_id: int | None = None,
) -> Any:
    """A transformers config for preset ``name``: tied embeddings, RoPE theta 1e6, full
    multi-head attention (as in the paper), ``arch`` family; for ``mamba`` tied embeddings
    and transformers' defaults otherwise (state 16, expand 2, as mamba-130m)."""
    check_preset(name, arch)
    transformers = require("transformers")
    if arch == "mamba":
        d_model, n_layers = MAMBA_PRESETS[name]
        return transformers.MambaConfig(
            vocab_size=vocab_size,
            hidden_size=d_model,
            num_hidden_layers=n_layers,
            state_size=16,
            expand=2,
            conv_kernel=4,
            tie_word_embeddings=True,
            eos_token_id=eos_token_id,
            bos_token_id=eos_token_id,
            pad_token_id=None,
        )
    hidden, ffn, layers, heads = PRESETS[name]
    cls = transformers.Qwen2Config if arch == "qwen2" else transformers.LlamaConfig
    return cls(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        rope_theta=1e6,
        tie_word_embeddings=True,
        eos_token_id=eos_token_id,
        bos_token_id=eos_token_id,
        pad_token_id=None,
    )


def refuse_custom_code(path: str, flag: str) -> None:
    """Refuse a model (a config json file or a model directory) that needs its own code:
    training runs none, so a config whose ``auto_map`` points at custom classes or whose
    ``model_type`` transformers does not know gets a message, not a transformers traceback.
    A path without a readable config is left to the loader's own error."""
    p = Path(path)
    f = p / "config.json" if p.is_dir() else p
    if not f.is_file():
        return
    try:
        d = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{flag} {path}: {f.name} is not JSON ({e})") from e
    if not isinstance(d, dict):
        raise InputError(f"{flag} {path}: {f.name} is not a JSON object")
    never = (
        "miniplm train runs no model's own code (there is no --trust-remote-code for "
        "train): use a config of an architecture transformers has, e.g. llama or qwen2"
    )
    if d.get("auto_map"):
        names = ", ".join(sorted(map(str, d["auto_map"])))
        raise InputError(
            f"{flag} {path}: {f.name} maps to the model's own code (auto_map: {names}); {never}"
        )
    model_type = d.get("model_type")
    mapping = require("transformers").models.auto.configuration_auto.CONFIG_MAPPING
    if model_type is not None and model_type not in mapping:
        raise InputError(
            f"{flag} {path}: model_type {model_type!r} is not an architecture transformers "
            f"has (a custom model needs its own code); {never}"
        )


def load_config(path: str) -> Any:
    """An HF config from a json file or a model directory (no remote code)."""
    transformers = require("transformers")
    p = Path(path)
    if p.is_file():
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{p}: not a JSON config ({e})") from e
        model_type = d.get("model_type")
        if not model_type:
            raise InputError(f"{p}: config has no model_type")
        return transformers.AutoConfig.for_model(**d)
    if p.is_dir():
        return transformers.AutoConfig.from_pretrained(str(p))
    raise FileNotFoundError(f"{path}: no such model config (a json file or directory)")


def count_parameters(model: Any, non_embedding: bool = False) -> int:
    n = sum(p.numel() for p in model.parameters())
    if non_embedding:
        n -= model.get_input_embeddings().weight.numel()
    return int(n)
