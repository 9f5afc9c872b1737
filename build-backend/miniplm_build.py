"""PEP 517 build backend: maturin's, plus the native `miniplm-sample` binary.

maturin builds the extension module (`miniplm._core`); it does not put a workspace's other
binaries in the wheel. This backend first builds `miniplm-cli` with cargo and copies the
executable into the wheel's data directory (`[tool.maturin] data`), whose `scripts/` pip
installs on PATH. So `miniplm-sample` is the Rust program itself, starting in a few
milliseconds with no Python interpreter, and identical to the one
`cargo build --release -p miniplm-cli` gives.

Build wheels through this backend (`pip wheel .`, `pip install .`, `python -m build`):
`maturin build` or `maturin develop` run directly bypass it and stop with "No such data
directory" (rather than make a wheel without its CLI).
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

import maturin  # type: ignore[import-untyped]
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


def _cargo(env: dict[str, str] | None, *args: str) -> subprocess.CompletedProcess[str]:
    cargo = (env or os.environ).get("CARGO", "cargo")
    try:
        return subprocess.run(
            [cargo, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True
        )
    except FileNotFoundError as e:
        raise RuntimeError(f"building miniplm needs cargo (the Rust toolchain): {e}") from e


def _option(config_settings: Mapping[str, Any] | None, name: str) -> str | None:
    """The value of maturin option ``name`` (``--target``, ``--compatibility``), if given."""
    args = maturin.get_maturin_pep517_args(config_settings)
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return str(args[i + 1])
        if a.startswith(name + "="):
            return str(a.split("=", 1)[1])
    return None


def _target(config_settings: Mapping[str, Any] | None) -> str | None:
    """The `--target` triple passed to maturin, if any: the binary must match the module."""
    return _option(config_settings, "--target")


def _zig_glibc(config_settings: Mapping[str, Any] | None) -> str | None:
    """With maturin's ``--zig``, the glibc version the binary must link against too
    (``--compatibility manylinux_2_28`` -> ``2.28``, ``manylinux2014`` -> ``2.17``), so that
    `cargo zigbuild` makes the CLI as portable as maturin makes the module."""
    if "--zig" not in maturin.get_maturin_pep517_args(config_settings):
        return None
    tag = _option(config_settings, "--compatibility") or "manylinux2014"
    legacy = {"manylinux2014": "2.17", "manylinux2010": "2.12", "manylinux1": "2.5"}
    if tag in legacy:
        return legacy[tag]
    if tag.startswith("manylinux_"):
        major, minor = tag.removeprefix("manylinux_").split("_")[:2]
        return f"{major}.{minor}"
    raise RuntimeError(f"--zig with --compatibility {tag}: only manylinux tags are supported")


def _host_triple(env: dict[str, str] | None) -> str:
    rustc = (env or os.environ).get("RUSTC", "rustc")
    out = subprocess.run([rustc, "-vV"], env=env, check=True, stdout=subprocess.PIPE, text=True)
    return next(ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("host:"))


def _empty_data() -> Path:
    """The data directory, existing (maturin requires it) and without scripts."""
    scripts = DATA / "scripts"
    if scripts.exists():
        shutil.rmtree(scripts)
    DATA.mkdir(parents=True, exist_ok=True)
    return scripts


def _native_sample(config_settings: Mapping[str, Any] | None) -> None:
    """Build `miniplm-sample` in release mode and place it in the wheel's scripts."""
    scripts = _empty_data()
    # maturin's own environment: where cargo is missing, recent maturin (1.16 here)
    # installs a temporary Rust toolchain and returns its environment; a maturin without
    # that hook needs cargo on PATH, as this build then does too.
    get_env = getattr(maturin, "_get_env", None)
    env = get_env() if get_env else None
    target = _target(config_settings)
    glibc = _zig_glibc(config_settings)
    cmd = ["build", "--release", "--locked", "-p", "miniplm-cli"]
    if glibc is not None:  # cargo-zigbuild: the target triple carries the glibc version
        target = target or _host_triple(env)
        cmd = ["zigbuild", *cmd[1:], "--target", f"{target}.{glibc}"]
    elif target:
        cmd += ["--target", target]
    print(f"Building the native miniplm-sample (cargo {' '.join(cmd)})")
    sys.stdout.flush()
    _cargo(env, *cmd)
    meta = json.loads(_cargo(env, "metadata", "--format-version", "1", "--no-deps").stdout)
    name = "miniplm-sample" + (".exe" if os.name == "nt" or "windows" in (target or "") else "")
    exe = Path(meta["target_directory"]) / (target or "") / "release" / name
    scripts.mkdir()
    shutil.copy2(exe, scripts / name)


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _native_sample(config_settings)
    return str(maturin.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_editable(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _native_sample(config_settings)
    return str(maturin.build_editable(wheel_directory, config_settings, metadata_directory))


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    _empty_data()  # sources only: no binary in the sdist
    return str(maturin.build_sdist(sdist_directory, config_settings))


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Mapping[str, Any] | None = None
) -> str:
    _empty_data()
    return str(maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings))


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: Mapping[str, Any] | None = None
) -> str:
    _empty_data()
    return str(maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings))
