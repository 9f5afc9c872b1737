"""PEP 517 build backend: maturin's, plus the native `miniplm-sample` binary.

maturin builds the extension module (`miniplm._core`); it does not put a workspace's other
binaries in the wheel. This backend first builds `miniplm-cli` with cargo and copies the
executable into the wheel's data directory (`[tool.maturin] data`), whose `scripts/` pip
installs on PATH. So `miniplm-sample` is the Rust program itself, starting in a few
milliseconds with no Python interpreter, and identical to the one
`cargo build --release -p miniplm-cli` gives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import maturin
from maturin import (
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

ROOT = Path(__file__).resolve().parent.parent
# Must match `data` in pyproject.toml's [tool.maturin].
DATA = ROOT / "target" / "wheel-data"


def _cargo(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [os.environ.get("CARGO", "cargo"), *args]
    try:
        return subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    except FileNotFoundError as e:
        raise RuntimeError(f"building miniplm needs cargo (the Rust toolchain): {e}") from e


def _empty_data() -> Path:
    """The data directory, existing (maturin requires it) and without scripts."""
    scripts = DATA / "scripts"
    if scripts.exists():
        shutil.rmtree(scripts)
    DATA.mkdir(parents=True, exist_ok=True)
    return scripts


def _native_sample() -> None:
    """Build `miniplm-sample` in release mode and place it in the wheel's scripts."""
    scripts = _empty_data()
    print("Building the native miniplm-sample (cargo build --release -p miniplm-cli)")
    sys.stdout.flush()
    _cargo("build", "--release", "--locked", "-p", "miniplm-cli")
    meta = json.loads(_cargo("metadata", "--format-version", "1", "--no-deps").stdout)
    name = "miniplm-sample" + (".exe" if os.name == "nt" else "")
    exe = Path(meta["target_directory"]) / "release" / name
    scripts.mkdir()
    shutil.copy2(exe, scripts / name)


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _native_sample()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _native_sample()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    _empty_data()  # sources only: no binary in the sdist
    return maturin.build_sdist(sdist_directory, config_settings)


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Mapping[str, Any] | None = None
) -> str:
    _empty_data()
    return maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: Mapping[str, Any] | None = None
) -> str:
    _empty_data()
    return maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)
