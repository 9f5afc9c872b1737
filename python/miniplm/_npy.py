"""Reading a user's ``.npy`` file without ever unpickling it: anything that is not a
plain numeric array is a FormatError naming the file (numpy's own messages talk about
pickles for a text file)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from miniplm.errors import FormatError


def load_npy(path: str | os.PathLike[str], what: str = "") -> npt.NDArray[Any]:
    """The array in ``path``; ``what`` (an option name, say) prefixes error messages.
    OS conditions (missing file, a directory) stay the builtin OSError subclasses."""
    where = f"{what} {os.fspath(path)}".strip()
    with open(path, "rb") as f:
        try:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            dtype = read(f)[2]
        except ValueError as e:
            raise FormatError(f"{where}: not a .npy file ({e})") from e
    if dtype.hasobject:
        raise FormatError(
            f"{where}: holds Python objects ({dtype}), not numbers; miniplm never unpickles"
        )
    try:
        array: npt.NDArray[Any] = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise FormatError(f"{where}: not a readable .npy array ({e})") from e
    return array
