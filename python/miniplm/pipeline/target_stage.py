"""The evaluation's text outside the corpus (the paper evaluates on DCLM, not on the Pile):
``[eval] texts`` files, and with the bundled corpus its target works, held out of it, and
the zero-shot task made from them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miniplm.pipeline.config import TARGET, RunConfig
from miniplm.pipeline.stage import Inputs, Outputs, Stage

__all__ = ["TARGET", "TargetOut", "TargetStage", "bundled_target", "has_target"]


@dataclass
class TargetOut(Outputs):
    texts: list[str]  # text files of whole documents (LM loss, bits per byte)
    mc_files: list[str]  # zero-shot multiple-choice tasks made from them
    works: list[str]  # what the bundled target set holds, "work (source)"
    group: str | None  # the field that names a document's work, for per-work figures


def bundled_target(cfg: RunConfig) -> bool:
    """Whether the run evaluates on the bundled target works: the bundled corpus (which
    leaves them out) and ``[eval] target`` on."""
    return not cfg.corpus.inputs and cfg.eval.target


def has_target(cfg: RunConfig) -> bool:
    return bundled_target(cfg) or bool(cfg.eval.texts)


class TargetStage(Stage[TargetOut]):
    """Writes the bundled target set (when the run has one) and records the text sets."""

    outputs = TargetOut

    def __init__(self, cfg: RunConfig) -> None:
        from miniplm import _core

        params: dict[str, Any] = {
            "texts": [[f, _core.file_fingerprint(f)] for f in cfg.eval.texts],
            "bundled": bundled_target(cfg),
        }
        if params["bundled"]:
            from miniplm.bundled import zero_shot_task
            from miniplm.default_corpus import target_works

            params["works"] = target_works()
            params["task"] = _core.file_fingerprint(str(zero_shot_task()))
        super().__init__(TARGET, (), params)

    def run(self, sdir: Path, inp: Inputs) -> TargetOut:
        cfg = inp.cfg
        texts = [inp.record(os.path.abspath(f)) for f in cfg.eval.texts]
        if not bundled_target(cfg):
            return TargetOut(texts, [], [], None)
        from miniplm.bundled import target_set, zero_shot_task
        from miniplm.default_corpus import target_works

        texts.insert(0, inp.record(target_set(sdir)))
        works = [f"{w} ({s})" for s, w in target_works()]
        return TargetOut(texts, [str(zero_shot_task())], works, "work")
