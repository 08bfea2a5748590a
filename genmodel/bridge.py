"""Zero-copy exchange between torch tensors and the arrays spdekit computes on (DLPack).

``from_torch(t)`` gives a numpy array (CPU tensor) or a cupy array (CUDA tensor) that shares the
tensor's memory; ``to_torch(x)`` wraps a numpy/cupy array as a tensor without copying. Writes
through either side are visible on the other. The chain itself (processes, pools, path targets,
losses, samplers, priors) does not need them: it passes its tensors to spdekit as they are, and
spdekit views them the same way (:mod:`spdekit._arrays`) and returns tensors on their device. What
is left here is for host-side work: ``host_array`` for statistics and tables built once (prior fits,
Gaussian references), ``numpy_score`` for spdekit's reverse SDE driven with host arrays (the
likelihood).

Constraints of DLPack: the tensor must not require grad (use ``.detach()``), must be strided
(dense), and negative strides (numpy views like ``a[::-1]``) cannot be exported.
"""

from __future__ import annotations

import numpy as np
import torch


def from_torch(t: torch.Tensor):
    """numpy (CPU) or cupy (CUDA) view of ``t``'s memory; no copy."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"from_torch expects a torch.Tensor, got {type(t).__name__}")
    if t.requires_grad:
        raise ValueError("from_torch: the tensor requires grad; pass t.detach() (spdekit kernels are not traced)")
    if t.device.type == "cpu":
        return np.from_dlpack(t)
    if t.device.type == "cuda":
        import cupy

        return cupy.from_dlpack(t)
    raise ValueError(f"from_torch: tensors on device {t.device} are not supported (cpu or cuda)")


def to_torch(x, allow_copy: bool = False) -> torch.Tensor:
    """torch tensor sharing ``x``'s memory (numpy or cupy array); no copy.

    Arrays DLPack cannot export (read-only numpy buffers, negative strides) raise ValueError, or
    are copied first when ``allow_copy=True``."""
    is_cupy = type(x).__module__.split(".")[0] == "cupy"
    if not (isinstance(x, np.ndarray) or is_cupy):
        raise TypeError(f"to_torch expects a numpy or cupy array, got {type(x).__name__}")
    problem = None
    if any(s < 0 for s in x.strides):
        problem = "it has negative strides (e.g. a[::-1])"
    elif isinstance(x, np.ndarray) and not x.flags.writeable:
        problem = "it is read-only"
    if problem is not None:
        if not allow_copy:
            raise ValueError(f"to_torch: the array cannot be shared zero-copy because {problem}; "
                             "pass allow_copy=True or np.ascontiguousarray(x)")
        x = x.copy()
    return torch.from_dlpack(x)


def host_array(t: torch.Tensor) -> np.ndarray:
    """A numpy array of ``t``'s values on the host (a view for a contiguous CPU tensor; detached, copied
    from a GPU), for host-side statistics and tables built once (prior fits, Gaussian references); the
    chain itself passes its tensors to spdekit as they are."""
    return from_torch(t.detach().cpu().contiguous())


def shares_memory(t: torch.Tensor, x) -> bool:
    """True when tensor ``t`` and array ``x`` start at the same address."""
    ptr = x.__array_interface__["data"][0] if isinstance(x, np.ndarray) else x.data.ptr
    return t.data_ptr() == ptr


def numpy_score(score_fn):
    """``score_fn(t, u)`` on torch tensors as a score on host arrays, for spdekit's
    :class:`spdekit.reverse.ReverseSDE`: t (B,) float64 and u (B, C, H, W) arrays in, an array like
    u out; u is handed over without a copy, t in u's dtype."""

    def score(t, u):
        ut = to_torch(u)
        s = score_fn(torch.as_tensor(t, dtype=ut.dtype), ut)
        if not isinstance(s, torch.Tensor) or s.shape != ut.shape:
            raise ValueError(f"score_fn must return a tensor of shape {tuple(ut.shape)}, got "
                             f"{getattr(s, 'shape', type(s).__name__)}")
        return from_torch(s.detach().to(ut.dtype).contiguous())

    score.score_fn = score_fn
    return score


__all__ = ["from_torch", "to_torch", "host_array", "shares_memory", "numpy_score"]
