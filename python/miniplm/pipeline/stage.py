"""A stage of ``miniplm run``: an object that owns its name, the stages it reads, its
parameters and its ``run``, writing into its own folder under the run dir.

A stage is skipped when its ``stage.json`` says it completed with the same key: a hash
of its parameters and of the completion stamps of the stages it reads. A stage whose key
changed is redone from scratch (and so are the stages after it, whose keys include its
new stamp); a stage interrupted mid-way (same key, not complete) is run again and picks
up where it stopped through its own resume support (training checkpoints, score parts).

A stage's ``run`` sees only the stages it declares in ``reads`` (``Inputs``): reading any
other is an ``InternalError`` at once, so no input can be left out of the key.

Each stage's outputs are a dataclass (``Outputs``) stored as ``outputs`` in stage.json.
Paths in them are recorded relative to the run directory (``record``) and resolved
against it on read (``resolve``), so a run directory can be moved and continued from any
working directory; paths outside it are recorded absolute."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from miniplm._atomic import atomic_write_text
from miniplm.errors import InputError, InternalError
from miniplm.pipeline.config import RunConfig

# Marks a record whose output paths are run-relative; a record without it (written by an
# older version, paths relative to that run's cwd) is not trusted and its stage reruns.
PATHS = "run-relative"


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True))


Out = TypeVar("Out", bound="Outputs")


@dataclass
class Outputs:
    """A stage's outputs: subclasses are dataclasses of JSON values (paths recorded)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fits(cls, d: object) -> bool:
        """Whether record ``d`` has this layout (an older version's may not)."""
        return isinstance(d, dict) and all(f.name in d for f in dataclasses.fields(cls))

    @classmethod
    def from_json(cls: type[Out], d: dict[str, Any]) -> Out:
        if not cls.fits(d):  # run_stage reran a record that did not fit: our bug
            raise InternalError(f"stage outputs {sorted(d)} do not fit {cls.__name__}")
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


class Stage(Generic[Out]):
    """One stage. Subclasses set ``outputs`` (their Outputs type) and ``run``; their
    constructor sets ``name``, ``reads`` and ``params`` from the config."""

    outputs: ClassVar[type[Outputs]]

    def __init__(self, name: str, reads: tuple[str, ...], params: dict[str, Any]) -> None:
        self.name, self.reads, self.params = name, reads, params

    def run(self, sdir: Path, inp: Inputs) -> Out:
        raise NotImplementedError


@dataclass
class Context:
    """The run: its config and directory, and the record of every stage finished so far.
    Stages do not see it (they get ``Inputs``); callers around the pipeline do."""

    cfg: RunConfig
    root: Path
    quiet: bool = False
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> its stage.json
    kinds: dict[str, type[Outputs]] = field(default_factory=dict)  # stage -> its outputs type
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def outputs(self, stage: str, kind: type[Out]) -> Out:
        """The finished ``stage``'s outputs, typed."""
        if stage not in self.done:
            raise InternalError(f"stage {stage!r} read before it finished")
        actual = self.kinds.get(stage)
        if actual is None or not issubclass(actual, kind):
            raise InternalError(f"stage {stage!r} has outputs {actual}, read as {kind.__name__}")
        return kind.from_json(self.done[stage]["outputs"])

    def path(self, stage: str, key: str) -> str:
        """The path output ``key`` of finished ``stage``, resolved."""
        return self.resolve(self.done[stage]["outputs"][key])

    def record(self, p: str | os.PathLike[str]) -> str:
        """``p`` as a stage output records it: relative to the run dir when inside it."""
        full, root = os.path.abspath(p), os.path.abspath(self.root)
        if os.path.commonpath([full, root]) == root:
            return Path(os.path.relpath(full, root)).as_posix()
        return full

    def resolve(self, recorded: str) -> str:
        """The path a stage output recorded with ``record`` names, from any cwd."""
        return recorded if os.path.isabs(recorded) else str(self.root / recorded)

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(f"[miniplm run] {msg}", file=sys.stderr, flush=True)


class Inputs:
    """What a stage's ``run`` sees: the config, the run dir and its declared reads."""

    def __init__(self, ctx: Context, stage: Stage[Any]) -> None:
        self._ctx, self._stage = ctx, stage
        self.cfg, self.root, self.quiet = ctx.cfg, ctx.root, ctx.quiet
        self.record, self.resolve, self.log = ctx.record, ctx.resolve, ctx.log

    def _check(self, stage: str) -> None:
        if stage not in self._stage.reads:
            raise InternalError(
                f"stage {self._stage.name!r} reads {stage!r} without declaring it "
                f"(reads: {list(self._stage.reads)}): its key would miss that input"
            )

    def get(self, stage: str, kind: type[Out]) -> Out:
        """Declared input ``stage``'s outputs, typed."""
        self._check(stage)
        return self._ctx.outputs(stage, kind)

    def elapsed_s(self, stage: str) -> float:
        """How long declared input ``stage`` took when it ran."""
        self._check(stage)
        return float(self._ctx.done[stage].get("elapsed_s", 0.0))


def stage_key(stage: Stage[Any], ctx: Context) -> str:
    from miniplm import __version__

    blob = {
        "miniplm": __version__,  # another release may write a stage differently
        "stage": stage.name,
        "params": stage.params,
        "reads": {r: ctx.done[r]["stamp"] for r in stage.reads},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _read_record(meta_path: Path) -> dict[str, Any] | None:
    """A stage folder's ``stage.json``, None if there is none."""
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:  # written atomically by us: someone else's file
        raise InputError(f"{meta_path}: not a miniplm run stage record ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("key"), str):
        raise InputError(f"{meta_path}: not a miniplm run stage record (no key)")
    return meta


def config_inputs(cfg: RunConfig) -> list[str]:
    """The files and folders a config reads (corpus, tokenizers, teacher, eval files):
    no stage folder may hold one, since a stage folder is deleted when its key changes."""
    teacher = cfg.teacher.model.split("::")[0] if cfg.teacher.model != "smollm2" else ""
    paths = [
        *cfg.corpus.inputs,
        cfg.tokenizer.path,
        cfg.students.tokenizer.path,
        teacher,
        *cfg.eval.texts,
        *cfg.eval.mc_files,
        cfg.eval.include_path,
    ]
    return [p for p in paths if p]


def _check_removable(sdir: Path, recorded: bool, ctx: Context) -> None:
    """Refuse to delete a stage folder that is not one (a file, a link, a folder of the
    stage's name without its record, holding files) or that holds an input of the run."""
    from miniplm import _core

    if sdir.is_symlink() or not sdir.is_dir():
        raise InputError(
            f"{sdir}: not a folder of stage {sdir.name!r} of this run (a file or a link): "
            "move it away; nothing was deleted"
        )
    if not recorded and any(sdir.iterdir()):
        raise InputError(
            f"{sdir}: a folder named like stage {sdir.name!r} without its stage.json, not "
            "written by `miniplm run`: move it away or give another --out; nothing was deleted"
        )
    _core.check_spares_inputs(os.fspath(sdir), config_inputs(ctx.cfg))


def run_stage(stage: Stage[Any], ctx: Context) -> None:
    missing = [r for r in stage.reads if r not in ctx.done]
    if missing:
        raise InternalError(f"stage {stage.name!r} reads {missing}, which have not run")
    sdir = ctx.root / stage.name
    meta_path = sdir / "stage.json"
    key = stage_key(stage, ctx)
    meta = _read_record(meta_path)
    ctx.kinds[stage.name] = stage.outputs
    if (
        meta is not None
        and meta.get("key") == key
        and meta.get("complete")
        and meta.get("paths") == PATHS  # else an older record: paths from its cwd
        and stage.outputs.fits(meta.get("outputs"))  # else an older layout
    ):
        ctx.done[stage.name] = meta
        ctx.skipped.append(stage.name)
        ctx.log(f"{stage.name}: complete, inputs unchanged: skipped")
        return
    if os.path.lexists(sdir) and (meta is None or meta.get("key") != key):
        _check_removable(sdir, meta is not None, ctx)
        shutil.rmtree(sdir)  # other inputs (or no record of them): start over
    resuming = sdir.exists()
    sdir.mkdir(parents=True, exist_ok=True)
    write_json(meta_path, {"key": key, "complete": False, "params": stage.params})
    ctx.log(f"{stage.name}: {'resuming' if resuming else 'running'}")
    t0 = time.perf_counter()
    outputs = stage.run(sdir, Inputs(ctx, stage))
    if not isinstance(outputs, stage.outputs):
        raise InternalError(f"stage {stage.name!r} returned {type(outputs).__name__}")
    meta = {
        "key": key,
        "complete": True,
        "stamp": uuid.uuid4().hex,
        "params": stage.params,
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "paths": PATHS,
        "outputs": outputs.to_json(),
    }
    write_json(meta_path, meta)
    ctx.done[stage.name] = meta
    ctx.ran.append(stage.name)
    ctx.log(f"{stage.name}: done in {meta['elapsed_s']:.1f} s")
