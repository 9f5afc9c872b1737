"""``miniplm run``: the whole MiniPLM pipeline, stage by stage (see stage.py and stages.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from miniplm._atomic import atomic_write_text
from miniplm.pipeline.config import RunConfig, dump
from miniplm.pipeline.report import ReportStage
from miniplm.pipeline.stage import Context, run_stage
from miniplm.pipeline.stages import build_stages


def run_pipeline(cfg: RunConfig, out: str | os.PathLike[str], *, quiet: bool = False) -> Context:
    """Run (or continue) the pipeline into ``out``; returns the context with the stages
    that ran and the ones skipped; the report is ``out/report.md``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "config.json", dump(cfg))  # the resolved config, with the results
    ctx = Context(cfg=cfg, root=root, quiet=quiet)
    if quiet:
        from miniplm._deps import require

        require("transformers").utils.logging.disable_progress_bar()
    stages = build_stages(cfg)
    stages.append(ReportStage(cfg, tuple(s.name for s in stages)))
    for stage in stages:
        run_stage(stage, ctx)
    summary = {"ran": ctx.ran, "skipped": ctx.skipped, "report": str(root / "report.md")}
    (root / "run.json").write_text(json.dumps(summary, indent=1))
    return ctx
