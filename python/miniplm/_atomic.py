"""Outputs that are safe: directories that appear complete or not at all, files replaced
whole, one writer per output (the core's lock), and never an output that destroys an
input (the core's rule). The rules themselves live in rust/core/src/output.rs."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from miniplm import _core
from miniplm.errors import FormatError, InputError

_FINISHED = "finished"  # in a resumable file's partial directory: the whole file, at the end


def check_spares_inputs(out: str | os.PathLike[str], inputs: Iterable[object]) -> None:
    """InputError if ``out`` is, contains, or would replace part of one of ``inputs``
    (paths; anything else, a hub model name or None, is skipped). Before touching anything."""
    paths = [os.fspath(p) for p in inputs if isinstance(p, (str, os.PathLike))]
    _core.check_spares_inputs(os.fspath(out), paths)


def dataset_files(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """A token dataset (a path, a glob, or a list of prefixes) as the inputs it is read
    from: what was given and its shard files."""
    given = [os.fspath(p) for p in ([path] if isinstance(path, (str, os.PathLike)) else path)]
    shards = _core.Dataset(given).shards()
    return [*given, *(os.fspath(s[k]) for s in shards for k in ("idx", "bin"))]


@contextmanager
def output_lock(out: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``out``'s lock (``.<name>.lock`` beside it) for the block: OutputLockedError,
    naming the holder, if another writer has it. Taking it removes a dead writer's debris
    (``.<name>.tmp-*``, ``.<name>.old-*``)."""
    lock = _core.OutputLock(os.fspath(out))
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _claim(out: Path, overwrite: bool) -> Iterator[Path]:
    """Hold ``out``'s lock and yield the temporary sibling name to write it under; an
    existing ``out`` is refused unless ``overwrite``, before and again under the lock
    (another writer may just have finished)."""

    def refuse_existing() -> None:
        if _lexists(out) and not overwrite:
            raise FileExistsError(f"{out}: output exists (pass overwrite=True to replace it)")

    refuse_existing()
    with output_lock(out):
        refuse_existing()
        yield out.parent / f".{out.name}.tmp-{os.getpid()}"


def _lexists(path: Path) -> bool:
    """Whether anything is at ``path``: a link counts itself, dangling or not."""
    return path.is_symlink() or path.exists()


def remove_entry(path: Path) -> None:
    """Remove what is at ``path`` by its own type: a file or a link is unlinked (a link is
    never followed, its target stays), a real directory removed with its contents."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _publish(tmp: Path, out: Path) -> None:
    """Put the finished directory ``tmp`` in place of ``out`` (an old ``out`` is moved aside
    first, then removed: a writer killed between the two renames leaves it to be put back).
    The old ``out`` may be anything: a directory, a file, a link (only the link goes)."""
    if _lexists(out):
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        remove_entry(old)
    else:
        tmp.rename(out)
    fsync_dir(out.parent)


@contextmanager
def atomic_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` to fill, holding ``out``'s lock; on success it
    replaces ``out`` by rename, on any error it is removed and ``out`` is untouched. An
    existing ``out`` is refused unless ``overwrite``."""
    with _claim(out, overwrite) as tmp:
        tmp.mkdir()
        try:
            yield tmp
            _publish(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def partial_dir(out: Path) -> Path:
    """Where a resumable job builds the directory ``out``: ``.<name>.partial`` beside it."""
    return out.parent / f".{out.name}.partial"


@contextmanager
def resumable_dir(
    out: Path, overwrite: bool, keep: Callable[[Path, BaseException], bool]
) -> Iterator[Path]:
    """As :func:`atomic_dir`, but the directory it yields (:func:`partial_dir`) may outlive
    a failed run, so that the job can continue it: kept where ``keep(dir, error)`` says so,
    and kept whenever the process is killed. The job checks that what it finds there is
    its own (and empties it if not)."""
    with _claim(out, overwrite):
        work = partial_dir(out)
        work.mkdir(exist_ok=True)
        try:
            yield work
            _publish(work, out)
        except BaseException as e:
            if not keep(work, e):
                shutil.rmtree(work, ignore_errors=True)
            raise


def fresh_dir(work: Path) -> None:
    """Empty the partial directory ``work`` for a run from the start."""
    shutil.rmtree(work)
    work.mkdir()


def resume_state(
    job: str,
    work: Path,
    checkpoint: str,
    identity: dict[str, Any],
    resume: bool,
    read: Callable[[Path], dict[str, Any]],
) -> dict[str, Any] | None:
    """The state of the checkpoint file ``checkpoint`` in ``work`` (``read`` of it, with
    the ``identity`` it was made with) to continue, or None after emptying ``work`` for a
    fresh run: no checkpoint, ``resume`` off, or one made with another identity (the
    message names the keys that differ)."""
    path = work / checkpoint
    if not resume:
        if path.is_file():
            print(f"{job}: discarding the partial output {work} (no resume)", file=sys.stderr)
        fresh_dir(work)
        return None
    if path.is_file():
        for tmp in work.glob(f".{checkpoint}.tmp-*"):  # a checkpoint killed while written
            tmp.unlink()
        state = read(path)
        old = state.get("identity")
        old = old if isinstance(old, dict) else {}
        diff = [k for k in identity if old.get(k) != identity[k]]
        if not diff:
            return state
        print(
            f"{job}: discarding the partial output {work}: it was made with another "
            f"{', '.join(diff)}",
            file=sys.stderr,
        )
    fresh_dir(work)
    return None


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (a rename into it, say) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str | Iterable[str]) -> Path:
    """Write ``text`` (a string, or pieces written one after another) to ``path`` through
    a temporary sibling, fsynced then renamed (and the rename synced): the file is the old
    one or the whole new one, never a part. The file gets the user's normal mode (0666
    less the umask), as ``open`` gives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            if isinstance(text, str):
                f.write(text)
            else:
                f.writelines(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextmanager
def resumable_file(
    out: Path, overwrite: bool, keep: Callable[[Path, BaseException], bool]
) -> Iterator[tuple[Path, Path]]:
    """As :func:`resumable_dir`, for a job whose output is the file ``out``: it yields the
    partial directory (:func:`partial_dir`) to work in and the name there to leave the
    finished file under; on success that file is fsynced and renamed over ``out`` and the
    directory removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with _claim(out, overwrite):
        work = partial_dir(out)
        work.mkdir(exist_ok=True)
        done = work / _FINISHED
        try:
            yield work, done
            with open(done, "rb") as f:
                os.fsync(f.fileno())
            os.replace(done, out)
            fsync_dir(out.parent)
        except BaseException as e:
            if not keep(work, e):
                shutil.rmtree(work, ignore_errors=True)
            raise
        shutil.rmtree(work)


def keep_checkpointed(job: str, checkpoint: str) -> Callable[[Path, BaseException], bool]:
    """The ``keep`` of a job whose partial output is continued from the file
    ``checkpoint`` in it: a run stopped by an error leaves the partial for the next one,
    except for bad input (fixing it changes the inputs, so the partial could not be
    continued) and before the first checkpoint (nothing there to continue)."""

    def keep(work: Path, error: BaseException) -> bool:
        if isinstance(error, (InputError, FormatError)) or not (work / checkpoint).is_file():
            return False
        print(
            f"{job}: stopped; the work up to its last checkpoint is kept in {work}, and the "
            "same command continues from there",
            file=sys.stderr,
        )
        return True

    return keep
