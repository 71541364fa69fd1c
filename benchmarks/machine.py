"""The machine line every benchmark prints first: CPU model, cores, kernel (and GPU if asked)."""
from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(gpu: bool = False) -> str:
    line = f"machine: {cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}"
    if gpu:
        try:
            import cupy
            props = cupy.cuda.runtime.getDeviceProperties(0)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            line += f", GPU {name} ({props['totalGlobalMem'] >> 30} GiB), CuPy {cupy.__version__}"
        except Exception as exc:  # noqa: BLE001 - the line says why there is no GPU
            line += f", no GPU ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return line
