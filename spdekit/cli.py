"""Command line: ``spdekit simulate CONFIG.toml --out traj.nc`` and ``spdekit plot traj.nc --out fig.png``."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ._version import __version__


def _simulate(args) -> int:
    from .config import ConfigError, build, load_config
    from .simulate import SimulationDiverged, simulate

    try:
        cfg = build(load_config(args.config), source=args.config)
    except ConfigError as exc:
        print(f"spdekit: {exc}", file=sys.stderr)
        return 2
    ini = cfg.raw["initial"]
    attrs = {"config": os.path.abspath(args.config), "initial_image": ini["image"],
             "value_range": list(ini.get("value_range", [0.0, 1.0]))}
    print(f"spdekit {__version__}: {cfg.spde!r}")
    print(f"  u0 {tuple(cfg.u0.shape)} {cfg.u0.dtype} from {ini['image']!r}; t in [{cfg.t0:g}, {cfg.t1:g}], "
          f"dt = {cfg.dt:g}, {cfg.solver!r}, backend {cfg.backend!r}")
    start = time.perf_counter()
    try:
        traj = simulate(cfg.spde, cfg.u0, cfg.t0, cfg.t1, cfg.dt, solver=cfg.solver, save_every=cfg.save_every,
                        seed=cfg.seed, backend=cfg.backend, progress=not args.no_progress, attrs=attrs,
                        out=args.out)
    except SimulationDiverged as exc:
        print(f"spdekit: {exc}\n  partial trajectory written to {args.out}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, ImportError) as exc:
        print(f"spdekit: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(f"  {len(traj)} states saved, {elapsed:.1f} s on backend {traj.backend!r} -> {args.out}")
    return 0


def _plot(args) -> int:
    from .plotting import plot_trajectory
    from .trajectory import open_trajectory

    try:
        traj = open_trajectory(args.trajectory)
    except (FileNotFoundError, ValueError) as exc:
        print(f"spdekit: {exc}", file=sys.stderr)
        return 2
    plot_trajectory(traj, args.out, max_columns=args.columns)
    print(f"figure written to {args.out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="spdekit", description="Stochastic PDEs on image grids.")
    parser.add_argument("--version", action="version", version=f"spdekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("simulate", help="run a configured simulation and write a netCDF trajectory")
    p.add_argument("config", help="TOML configuration (see spdekit.config)")
    p.add_argument("--out", required=True, help="output netCDF file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_simulate)
    q = sub.add_parser("plot", help="draw the forward process as rows of snapshots")
    q.add_argument("trajectory", help="netCDF file written by 'spdekit simulate'")
    q.add_argument("--out", required=True, help="output image (PNG, PDF, ...)")
    q.add_argument("--columns", type=int, default=9, help="number of snapshots per row")
    q.set_defaults(func=_plot)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
