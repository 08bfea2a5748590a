"""Figures of the forward process: rows of snapshots over time (like the paper's Fig. 1 and 8)."""

from __future__ import annotations

import numpy as np


def snapshot_indices(n_saved: int, max_columns: int) -> np.ndarray:
    """Evenly spread indices of at most ``max_columns`` saved states (first and last included)."""
    if n_saved <= max_columns:
        return np.arange(n_saved)
    return np.unique(np.round(np.linspace(0, n_saved - 1, max_columns)).astype(int))


def plot_trajectory(traj, out=None, samples=None, max_columns: int = 9, value_range=None, dpi: int = 120,
                    format: str | None = None):
    """One row per sample (at most 4 by default), one column per saved time.

    Grey images use the first channel; three-channel images are shown in colour. Intensities are
    clipped to ``value_range`` (default: the range stored with the run, else that of the initial
    state) so that the growing noise does not wash out the colour scale. Returns the figure; with
    ``out`` it is also saved (PNG, PDF, ... by extension, or ``format``).
    """
    from ._checks import check_int

    check_int("max_columns", max_columns, minimum=1)
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    states = np.asarray(traj.states)
    n, B, C = states.shape[:3]
    samples = list(range(min(B, 4))) if samples is None else list(samples)
    cols = snapshot_indices(n, max_columns)
    if value_range is None:
        value_range = traj.attrs.get("value_range") or (float(states[0].min()), float(states[0].max()))
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        hi = lo + 1.0
    fig, axes = plt.subplots(len(samples), len(cols), figsize=(1.6 * len(cols), 1.6 * len(samples) + 0.3),
                             squeeze=False)
    for r, s in enumerate(samples):
        for c, k in enumerate(cols):
            ax = axes[r, c]
            img = (np.clip(states[k, s], lo, hi) - lo) / (hi - lo)
            if C == 3:
                ax.imshow(np.moveaxis(img, 0, -1), interpolation="nearest")
            else:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {traj.times[k]:.3g}", fontsize=8)
        axes[r, 0].set_ylabel(f"sample {s}", fontsize=8)
    solver = traj.solver.to_dict().get("solver", "")
    fig.suptitle(f"forward process ({solver}, dt = {traj.dt:g})", fontsize=9)
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=dpi, format=format)
        plt.close(fig)
    return fig
