"""``python -m miniplm._sample``: the Rust CLI run inside the extension module.

The ``miniplm-sample`` on PATH is the same program built as a native executable (the
wheel's script, see ``build-backend/miniplm_build.py``); this entry serves environments
where only the module is importable."""

from __future__ import annotations

import sys

from miniplm import _core
from miniplm.cli import sigterm_as_interrupt


def main() -> None:
    try:
        with sigterm_as_interrupt():
            code = _core.sample_main(["miniplm-sample", *sys.argv[1:]])
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the job was cancelled and cleaned up
        print("miniplm-sample: interrupted; no output was written", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
