"""Console script ``miniplm-sample``: the Rust CLI, run inside the extension module."""

from __future__ import annotations

import sys

from miniplm import _core


def main() -> None:
    sys.exit(_core.sample_main(["miniplm-sample", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
