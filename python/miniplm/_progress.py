"""Progress bars: on a terminal (stderr a tty) unless asked otherwise, in the stage's own
unit (steps, tokens) with its rate and ETA; none when piped, so a log holds no
carriage-return spam."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def show_progress(progress: bool | None) -> bool:
    """``progress`` as the options give it: None means "when stderr is a terminal"."""
    return sys.stderr.isatty() if progress is None else progress


@contextmanager
def library_bars(enabled: bool) -> Iterator[None]:
    """transformers' and huggingface_hub's own bars (loading weights, "Writing model
    shards") off for the block unless ours are on; put back as they were after."""
    if enabled:
        yield
        return
    from miniplm._deps import require

    logging = require("transformers").utils.logging
    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def progress_bar(
    total: int | None,
    unit: str,
    desc: str,
    enabled: bool,
    *,
    initial: int = 0,
    unit_scale: bool = False,
) -> Any:
    """A tqdm bar on stderr (None when not ``enabled`` or tqdm is missing); ``total``
    None: a count and a rate, no ETA."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        unit_scale=unit_scale,
        file=sys.stderr,
        desc=desc,
        **_shape(),
    )


def _shape() -> dict[str, Any]:
    """The bar's size: the terminal's, followed as it changes; a fixed one where the
    terminal does not say (0 x 0: a pty without a size, as ``script``, IDE consoles and
    agents give), which tqdm takes as -1 columns and rows and so prints nothing at all."""
    try:
        cols, rows = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # not a file (captured) or not a tty
        cols = rows = 0
    if cols > 1 and rows > 1:
        return {"dynamic_ncols": True}
    return {"ncols": 100, "nrows": 24}
