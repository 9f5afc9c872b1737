"""The MFU denominator: a GPU's dense bf16 peak TFLOP/s, from its name (spec sheets) or
from ``MINIPLM_PEAK_TFLOPS`` (e.g. a measured figure: an H200 reaches about 790 of its 989
on random matmuls). Shared by the trainer's log and the benchmarks."""

from __future__ import annotations

import os

from miniplm.errors import InputError

ENV = "MINIPLM_PEAK_TFLOPS"

# First match wins: the more specific names (PCIe, NVL) come before their family.
SPEC_TFLOPS = (
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("H800", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
)


def peak_tflops(device_name: str) -> tuple[float | None, str]:
    """``(TFLOP/s or None, where it came from)`` for a GPU called ``device_name``."""
    override = os.environ.get(ENV, "").strip()
    if override:
        try:
            value = float(override)
        except ValueError:
            value = -1.0
        if value <= 0:
            raise InputError(f"{ENV}={override!r}: expected a positive number of TFLOP/s")
        return value, ENV
    for key, value in SPEC_TFLOPS:
        if key in device_name:
            return value, f"spec sheet ({key}, dense bf16)"
    return None, f"unknown GPU {device_name!r} (set {ENV})"
