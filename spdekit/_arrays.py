"""Array interchange: numpy and cupy arrays natively, any other DLPack-capable array (torch, jax,
...) through DLPack without copies.

``as_native(x)`` returns a numpy (host) or cupy (CUDA) view of x's memory and a function that
turns a result back into x's own type on x's device. The way back calls ``from_dlpack`` of the
library that owns x, found from the type of x (a module the caller has already imported); spdekit
imports no such library itself. DLPack hands the consumer's stream to the producer, so device
arrays are exchanged stream-safely.
"""

from __future__ import annotations

import sys

import numpy as np

#: DLPack device types (dlpack.h)
_CPU, _CUDA, _CUDA_HOST, _CUDA_MANAGED = 1, 2, 3, 13


def _identity(a):
    return a


def _owner(x) -> str:
    return type(x).__module__.split(".")[0]


def as_native(x):
    """(native_array, restore) for numpy, cupy or any array with ``__dlpack__``."""
    owner = _owner(x)
    if isinstance(x, np.ndarray) or owner == "cupy":
        return x, _identity
    if not hasattr(x, "__dlpack__"):
        raise TypeError(
            f"expected a numpy, cupy or DLPack-capable array, got {type(x).__module__}.{type(x).__name__}"
        )
    device_type = x.__dlpack_device__()[0]
    try:
        if device_type in (_CPU, _CUDA_HOST):
            native = np.from_dlpack(x)
        elif device_type in (_CUDA, _CUDA_MANAGED):
            import cupy

            native = cupy.from_dlpack(x)
        else:
            raise TypeError(f"arrays on DLPack device type {device_type} are not supported (CPU and CUDA are)")
    except (BufferError, RuntimeError) as exc:
        raise TypeError(f"cannot share the memory of this {owner} array through DLPack: {exc}") from exc
    library = sys.modules[owner]
    from_dlpack = getattr(library, "from_dlpack", None)
    if from_dlpack is None:  # e.g. libraries that keep it in a submodule
        from_dlpack = getattr(getattr(library, "dlpack", None), "from_dlpack", None)
    if from_dlpack is None:
        raise TypeError(f"{owner} exposes no from_dlpack to return results in its own type")
    return native, from_dlpack


def to_host(a):
    """A numpy array with a's values (copies from the GPU; numpy arrays pass through)."""
    if _owner(a) == "cupy":
        return a.get()
    return np.asarray(a)
