"""Outputs that are safe: directories that appear complete or not at all, files replaced
whole, one writer per output (the core's lock), and never an output that destroys an
input (the core's rule). The rules themselves live in rust/core/src/output.rs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from miniplm import _core


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
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out}: output exists (pass overwrite=True to replace it)")

    refuse_existing()
    with output_lock(out):
        refuse_existing()
        yield out.parent / f".{out.name}.tmp-{os.getpid()}"


def _publish(tmp: Path, out: Path) -> None:
    """Put the finished directory ``tmp`` in place of ``out`` (an old ``out`` is moved aside
    first, then removed: a writer killed between the two renames leaves it to be put back)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
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
def atomic_file(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling name of file ``out`` to write, holding ``out``'s lock; on
    success it is fsynced and renamed over ``out``, on any error removed (``out``
    untouched). An existing ``out`` is refused unless ``overwrite``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with _claim(out, overwrite) as tmp:
        try:
            yield tmp
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, out)
            fsync_dir(out.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
