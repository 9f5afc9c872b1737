"""``miniplm run``: the whole MiniPLM pipeline, stage by stage (see stage.py and stages.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from miniplm._atomic import atomic_write_text, output_lock
from miniplm.errors import InputError
from miniplm.pipeline.config import RunConfig, dump
from miniplm.pipeline.report import ReportStage
from miniplm.pipeline.stage import Context, run_stage
from miniplm.pipeline.stages import build_stages

# Marks a run directory: `miniplm run` deletes and rewrites stage folders in it, so it
# writes only into a new or empty directory, or one that holds this mark.
RUN_MARK = ".miniplm-run"


def _claim_run_dir(root: Path) -> None:
    """Make ``root`` a run directory, or refuse one that holds anything else (a user's
    folder, whose ``data/`` or ``config.json`` the stages would replace)."""
    if (root / RUN_MARK).is_file():
        return
    if os.path.lexists(root) and not root.is_dir():
        raise InputError(f"{root}: --out is not a directory")
    entries = list(root.iterdir()) if root.is_dir() else []
    # A run of a version before the mark: stage folders with their records, nothing else.
    older = bool(entries) and all(
        e.name in _RUN_FILES or (e / "stage.json").is_file() for e in entries
    )
    if entries and not older:
        raise InputError(
            f"{root}: not empty and not a `miniplm run` directory (no {RUN_MARK}); the run "
            "deletes and rewrites stage folders and config.json in its --out: give a new "
            "or empty directory"
        )
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / RUN_MARK, json.dumps({"format": "miniplm.run", "version": 1}))


_RUN_FILES = {"config.json", "run.json", "report.md"}  # beside the stage folders


def run_pipeline(cfg: RunConfig, out: str | os.PathLike[str], *, quiet: bool = False) -> Context:
    """Run (or continue) the pipeline into ``out``; returns the context with the stages
    that ran and the ones skipped; the report is ``out/report.md``. One run at a time
    holds ``out`` (OutputLockedError for a second)."""
    root = Path(out)
    root.resolve().parent.mkdir(parents=True, exist_ok=True)  # where the lock lives
    with output_lock(root.resolve()):
        _claim_run_dir(root)
        return _run(cfg, root, quiet)


def _run(cfg: RunConfig, root: Path, quiet: bool) -> Context:
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
    atomic_write_text(root / "run.json", json.dumps(summary, indent=1))
    return ctx
