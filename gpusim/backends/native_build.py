"""Compiling kernels/ with the host C++ compiler for the native backend, once per config shape and dtype.

The generated header of `kernel_config.config_header` fixes every size, as for the GPU build;
kernels/native.cpp wraps the fused kernel in OpenMP threads. A build is kept on disk under
`$XDG_CACHE_HOME/gpusim/native/KEY/` (beside the GPU build's `gpusim/kernels/`), where KEY digests
everything that changes the machine code: the generated header, every kernel source, the
compiler's version, the flags and the CPU that `-march=native` targets. Builds are written under
a temporary name and renamed, so concurrent processes never load a half-written library.

The flags keep the arithmetic numpy's: `-ffp-contract=off` (no fused multiply-adds) and no
fast-math, so every +, -, *, / and sqrt rounds as numpy's does. float64 builds define
GPUSIM_NUMPY_MATH: exp, log, expm1 and log1p then go through numpy's own loops (kernels/native.cpp,
`native_backend.numpy_loops`), where numpy differs from the C library; float32 builds keep the
C library's (docs/backends.md, "Native backend").
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from gpusim.backends.kernel_config import config_header, kernels_dir, source_digest
from gpusim.spec import RunSpec

DRIVER = "native.cpp"
"""The C++ unit of the native build: kernels/simulate.cu through kernels/host_shim.h, with OpenMP."""
HOST_SOURCES = (DRIVER, "host_shim.h")
"""Sources of the native build besides kernel_config.KERNEL_SOURCES."""

FLAGS = (
    "-O3",
    "-march=native",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fopenmp",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-fvisibility=hidden",
    "-fvisibility-inlines-hidden",
    "-DGPUSIM_GENERATED_CONFIG",
)
"""Optimised for this CPU without changing a rounding: no FMA contraction, no fast-math
(-fno-math-errno only lets sqrt inline: it sets no errno but returns the same value); symbols
hidden but the exported entry points, so two builds can live in one process."""

NUMPY_MATH = "-DGPUSIM_NUMPY_MATH"
"""float64 only: exp, log, expm1 and log1p as numpy computes them (one call through numpy's loop each)."""


def flags(dtype: str) -> tuple[str, ...]:
    """The compiler flags of a build of this dtype."""
    return (*FLAGS, NUMPY_MATH) if dtype == "float64" else FLAGS


COMPILERS = ("c++", "g++", "clang++")
COMPILE_TIMEOUT_S = 600
LIBRARY = "libgpusim_native.so"


class NativeBuildError(Exception):
    """The native backend cannot be built here: no compiler, or the compiler failed."""


def find_compiler() -> str | None:
    """The C++ compiler to use: $CXX, else the first of COMPILERS on PATH."""
    named = os.environ.get("CXX")
    if named:
        return shutil.which(named)
    for name in COMPILERS:
        found = shutil.which(name)
        if found:
            return found
    return None


@functools.cache
def compiler_version(compiler: str) -> str:
    """The first line of `compiler --version` (part of the cache key and of the backend's device string)."""
    done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines else compiler


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU's model name, else the architecture."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_signature() -> str:
    """The CPU's model name and feature flags, which -march=native compiles for."""
    return f"{cpu_name()}|{_cpuinfo().get('flags', '')}"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpusim" / "native"


def build_key(header: str, compiler: str, build_flags: tuple[str, ...]) -> str:
    """Digest of everything that changes the library built from `header` with `build_flags`."""
    digest = hashlib.sha256(source_digest(header).encode())
    for name in HOST_SOURCES:
        digest.update((kernels_dir() / name).read_bytes())
    for part in (compiler_version(compiler), " ".join(build_flags), cpu_signature()):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


def build_library(spec: RunSpec, compiler: str) -> tuple[Path, bool]:
    """The native library for `spec`'s shape and dtype, and whether it was compiled now (False: from the disk cache)."""
    header = config_header(spec)
    build_flags = flags(spec.dtype)
    folder = cache_root() / build_key(header, compiler, build_flags)
    library = folder / LIBRARY
    if library.exists():
        return library, False
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gpusim_config.cuh").write_text(header)
    fd, partial = tempfile.mkstemp(prefix=LIBRARY + ".", dir=folder)
    os.close(fd)
    cmd = [compiler, *build_flags, "-I", str(folder), "-I", str(kernels_dir()), str(kernels_dir() / DRIVER), "-o", partial]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip()[:300])
            raise NativeBuildError(f"{compiler_version(compiler)} could not build the native kernels: {first}")
        os.replace(partial, library)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return library, True
