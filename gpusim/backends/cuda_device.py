"""The CUDA device a cupy backend computes on: its name for outputs, its free memory for chunks."""

from __future__ import annotations

import cupy


class CudaDevice:
    """The current cupy device when created (the engine runs chunks on threads: each call
    selects this device again)."""

    def __init__(self) -> None:
        self.id = cupy.cuda.runtime.getDevice()
        self.properties = cupy.cuda.runtime.getDeviceProperties(self.id)
        name = self.properties["name"]
        self.name = name.decode() if isinstance(name, bytes) else str(name)

    @property
    def description(self) -> str:
        return f"cuda:{self.id} ({self.name})"

    def free_bytes(self) -> int:
        """Free device memory, counting what cupy's pool holds but does not use."""
        with cupy.cuda.Device(self.id):
            free, _total = cupy.cuda.runtime.memGetInfo()
        return int(free) + cupy.get_default_memory_pool().free_bytes()
