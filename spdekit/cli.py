"""Command line: ``spdekit simulate CONFIG.toml --out traj.nc`` and ``spdekit plot traj.nc --out fig.png``.

Errors are one line on stderr, ``spdekit COMMAND: error: ...``, naming the option or the config key
(``section.key``) at fault. Exit status: 0 done; 1 the simulation diverged (the partial trajectory
is kept); 2 bad options, config or input files, or an output that cannot be written (checked before
the work starts); 130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM (128 + the signal number): the
states saved so far stay in ``--out``, marked interrupted. Unexpected exceptions (bugs) still show
their traceback.

The helpers below (one-line argument errors, help texts with defaults, output checks, atomic writes,
signals) are shared with the ``genmodel`` command line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from ._version import __version__

# ---------------------------------------------------------------------------------------------------------------
# shared command-line helpers (also used by genmodel.cli)


class UsageError(SystemExit):
    """A bad command-line option: printed as one line, exit status 2 (``code``). A SystemExit, as
    argparse raises for the options it checks itself; ``str(exc)`` is the message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``PROG: error: MESSAGE (see PROG --help)``, exit status 2."""

    def error(self, message):
        print(f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')", file=sys.stderr)
        raise UsageError(message)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already states its default (or the
    option is a flag, off by default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        stated = "(default" in text or "default:" in text
        if (stated or any(action.default is v for v in (None, False, argparse.SUPPRESS))
                or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        return text + " (default: %(default)s)"


def one_line(message) -> str:
    """A message on one line: line breaks of multi-line library messages become '; '."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    return "; ".join(lines)


def thread_count(text):
    """argparse type of --threads: "auto" or an integer >= 1 (spdekit.threads)."""
    if text == "auto":
        return text
    return int_at_least(1)(text)


thread_count.__name__ = "'auto' or int>=1"


def int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``."""

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {v}")
        return v

    parse.__name__ = f"int>={minimum}"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, lo_open: bool = True, hi_open: bool = False):
    """argparse type: a finite number in the interval (lo, hi] (ends and openness configurable)."""
    import math

    left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
    rng = f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{right}"

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {rng}, got {text!r}") from None
        ok = math.isfinite(v)
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a number in {rng}, got {text}")
        return v

    parse.__name__ = "number"
    return parse


def check_output_path(path, option: str = "--out", suffixes=None, shown=None) -> Path:
    """Check, before any work, that ``path`` can be written: its suffix (when ``suffixes`` is given),
    not a folder, and the nearest existing folder above it accepts a new file (a probe file is
    created and removed there; folders that do not exist yet are created by the write itself).
    Raises :class:`UsageError` naming ``option`` and ``shown`` (default: the path)."""
    p = Path(path)
    name = str(p) if shown is None else str(shown)
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise UsageError(f"{option} must end in {', '.join(suffixes)}; got {p.name!r}")
    if p.is_dir():
        raise UsageError(f"{option} {name!r} is a folder; give a file name")
    anchor = p.absolute().parent
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir():
        raise UsageError(f"{option} {name!r}: {str(anchor)!r} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=anchor)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise UsageError(f"{option} {name!r}: cannot write in {str(anchor)!r} ({exc.strerror or exc})") from None
    return p


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path next to ``path`` (same suffix) to write to; on success it replaces
    ``path`` (its folders are created), on any error it is removed: no half-written output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def one_line_warnings(prefix: str):
    """While active, warnings shown on stderr are one line each: ``PREFIX: warning: MESSAGE``."""
    import warnings

    previous = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        return f"{prefix}: warning: {one_line(message)} ({category.__name__})\n"

    warnings.formatwarning = fmt
    try:
        yield
    finally:
        warnings.formatwarning = previous


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt (``finally`` blocks and writers close cleanly)."""

    signum = signal.SIGTERM


def interrupt_status(exc: BaseException) -> tuple[str, int]:
    """(signal name, exit status 128 + signal number) for KeyboardInterrupt (SIGINT) or Terminated."""
    signum = getattr(exc, "signum", signal.SIGINT)
    return signal.Signals(signum).name, 128 + int(signum)


@contextlib.contextmanager
def sigterm_raises():
    """While active (main thread only), SIGTERM raises :class:`Terminated` instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------------------------
# spdekit commands


def _error(args, message) -> None:
    print(f"spdekit {args.command}: error: {one_line(message)}", file=sys.stderr)


def _simulate(args) -> int:
    import warnings

    import numpy as np

    from .config import ConfigError, build, load_config
    from .simulate import SimulationDiverged, simulate
    from .spde import StabilityWarning

    try:
        cfg = build(load_config(args.config), source=args.config)
    except ConfigError as exc:
        _error(args, exc)
        return 2
    check_output_path(args.out)
    ini = cfg.raw["initial"]
    attrs = {"config": os.path.abspath(args.config), "initial_image": ini["image"],
             "value_range": list(ini.get("value_range", [0.0, 1.0]))}
    bound = cfg.spde.stability_bound(cfg.t0, cfg.t1)
    unstable = cfg.dt > bound and not cfg.solver.stiff_stable
    if unstable:  # allowed by run.allow_unstable_dt = true (else build refused it)
        note = (f"run.dt = {cfg.dt:g} exceeds the explicit stability bound h^2/(4 max alpha1) = {bound:.4g} "
                f"(run.allow_unstable_dt = true): expect oscillations or blow-up")
        attrs["unstable_dt"] = note
        print(f"spdekit simulate: warning: {note}", file=sys.stderr)
    print(f"spdekit {__version__}: {cfg.spde!r}")
    print(f"  u0 {tuple(cfg.u0.shape)} {cfg.u0.dtype} from {ini['image']!r}; t in [{cfg.t0:g}, {cfg.t1:g}], "
          f"dt = {cfg.dt:g}, {cfg.solver!r}, backend {cfg.backend!r}", flush=True)
    start = time.perf_counter()
    try:
        # overflow on the way to a blow-up is reported by SimulationDiverged (one line), not numpy's warnings
        with sigterm_raises(), warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
            if unstable:  # reported once above, in the CLI's words
                warnings.simplefilter("ignore", StabilityWarning)
            traj = simulate(cfg.spde, cfg.u0, cfg.t0, cfg.t1, cfg.dt, solver=cfg.solver, save_every=cfg.save_every,
                            seed=cfg.seed, backend=cfg.backend, progress=not args.no_progress, attrs=attrs,
                            out=args.out, threads=args.threads)
    except SimulationDiverged as exc:
        part = exc.trajectory
        _error(args, f"simulation diverged at step {exc.step} (t = {exc.time:.6g}): the state is no longer finite; "
                     f"partial trajectory written to {args.out} ({len(part.times)} saved states up to "
                     f"t = {part.times[-1]:.6g}, marked diverged); reduce run.dt (stability bound "
                     f"h^2/(4 max alpha1) = {bound:.4g}) or use run.solver = 'tamed'")
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: simulate closed the file as an interrupted run
        name, status = interrupt_status(exc)
        kept = f"nothing written to {args.out}"
        if os.path.exists(args.out):
            kept = f"the states saved so far are kept in {args.out}, marked interrupted (completed = 0)"
            try:
                from .trajectory import open_trajectory

                part = open_trajectory(args.out)
                n = len(part.times)
                kept = (f"{n} saved state{'s' if n > 1 else ''} up to t = {float(part.times[-1]):.6g} "
                        f"{'are' if n > 1 else 'is'} kept in {args.out}, marked interrupted (completed = 0)")
            except (OSError, ValueError):
                pass
        print(f"spdekit simulate: interrupted ({name}); {kept}", file=sys.stderr)
        return status
    except (ValueError, TypeError, ImportError) as exc:
        _error(args, exc)
        return 2
    except OSError as exc:
        _error(args, f"cannot write {args.out}: {exc.strerror or exc}")
        return 2
    elapsed = time.perf_counter() - start
    peak = float(np.abs(traj.states).max())
    print(f"  {len(traj)} states saved, {elapsed:.1f} s on backend {traj.backend!r} -> {args.out}"
          + (f"; max |u| = {peak:.4g}" if unstable else ""))
    return 0


def _plot(args) -> int:
    from .plotting import plot_trajectory
    from .store import DamagedFileError
    from .trajectory import open_trajectory

    check_output_path(args.out, suffixes=_figure_formats())
    try:
        traj = open_trajectory(args.trajectory, recover=args.recover)
    except DamagedFileError as exc:
        _error(args, str(exc).replace("pass recover=True to open_trajectory to read them", "--recover plots them"))
        return 2
    except (FileNotFoundError, ValueError) as exc:
        _error(args, exc)
        return 2
    except OSError as exc:
        _error(args, f"cannot read {args.trajectory}: {exc.strerror or exc}")
        return 2
    try:
        with atomic_output(args.out) as tmp:
            plot_trajectory(traj, tmp, max_columns=args.columns, format=Path(args.out).suffix.lstrip(".").lower())
    except ValueError as exc:  # e.g. an image format matplotlib does not know
        _error(args, f"--out {args.out}: {exc}")
        return 2
    except OSError as exc:
        _error(args, f"cannot write {args.out}: {exc.strerror or exc}")
        return 2
    if traj.integrity == "recovered":
        print(f"spdekit plot: warning: {args.trajectory} is damaged; plotted its {len(traj)} valid state"
              f"{'s' if len(traj) > 1 else ''} (t = {float(traj.times[0]):.6g} to {float(traj.times[-1]):.6g})",
              file=sys.stderr)
    print(f"figure written to {args.out}")
    return 0


def _figure_formats() -> tuple:
    """The file extensions matplotlib can write (with the Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return tuple(f".{ext}" for ext in FigureCanvasAgg(Figure()).get_supported_filetypes())


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="spdekit", description="Stochastic PDEs on image grids.",
                            formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"spdekit {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("simulate", help="run a configured simulation and write a netCDF trajectory",
                       formatter_class=HelpFormatter,
                       description="Run the simulation a TOML config describes, streaming every saved state to "
                                   "--out. Ctrl-C keeps the states saved so far (exit status 130).")
    p.add_argument("config", help="TOML configuration (see examples/demo.toml and the docstring of spdekit.config); "
                                  "relative paths in it are relative to its folder")
    p.add_argument("--out", required=True, help="output netCDF file (folders are created)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--threads", type=thread_count, default="auto",
                   help="threads of the numba kernels: 'auto' follows the machine's load (spdekit.threads; "
                        "the results do not depend on it) or a fixed count")
    p.set_defaults(func=_simulate)
    q = sub.add_parser("plot", help="draw the forward process as rows of snapshots", formatter_class=HelpFormatter)
    q.add_argument("trajectory", help="netCDF file written by 'spdekit simulate'")
    q.add_argument("--out", required=True, help="output image; the format follows the extension (PNG, PDF, SVG, "
                                                "...); folders are created")
    q.add_argument("--columns", type=int_at_least(1), default=9,
                   help="at most this many snapshots per row (evenly spread, first and last included)")
    q.add_argument("--recover", action="store_true",
                   help="plot the valid states of a damaged (truncated or corrupted) file instead of refusing it")
    q.set_defaults(func=_plot)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # bad options: one line, UsageError (SystemExit, status 2)
    try:
        with one_line_warnings(f"spdekit {args.command}"):
            return args.func(args)
    except UsageError as exc:  # an option found bad after parsing (e.g. an --out that cannot be written)
        _error(args, exc)
        raise
    except KeyboardInterrupt as exc:  # (simulate reports its own, keeping the states saved so far)
        name, status = interrupt_status(exc)
        print(f"spdekit {args.command}: interrupted ({name}); nothing written", file=sys.stderr)
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
