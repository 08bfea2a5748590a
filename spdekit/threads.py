"""How many threads the numba kernels of a run use: a fixed count, or "auto" (follows the machine's load).

Each step of a run opens parallel regions (the drift and update kernels of
:mod:`spdekit.backends.numba_backend`, the counter-based noise of :mod:`spdekit.backends.philox`):
the step's tasks are split statically over the threads and the step ends at a barrier. When other
processes hold the cores, the operating system deschedules one of the threads for a time slice and the
whole step waits for it: on a busy machine a run can be many times slower with all threads than with
one (docs/performance.md, "Threads under load"), while on an idle machine large grids gain from every
core. No fixed count is right in both cases, and the load can change while a run goes on.

``threads="auto"`` (the default of :func:`spdekit.simulate` and :func:`spdekit.ensemble`) therefore
follows the load. Every ``window`` seconds of the run it reads how much CPU time the cores of this
process's affinity mask spent on OTHER processes (``/proc/stat`` minus this process's own time, Linux)
and runs the next window with the cores left free: n_free = n - others (rounded, at least one, at most
the available threads: the affinity mask capped by ``NUMBA_NUM_THREADS``). A run starts with the count
the last run of this process chose (if recent), else with the cores not taken by other processes'
tasks runnable at that instant (``procs_running`` minus this process's own runnable threads). Steps
smaller than ``serial_below`` numbers (B * C * H * W) always run on one thread: there a parallel launch
costs more than it saves
(docs/performance.md). Where ``/proc/stat`` cannot be read, "auto" uses every available thread.

The thread count never changes the numbers a run produces: the kernels reduce per task, not per
thread, and the noise streams are counter-based (:mod:`spdekit.random`). An integer ``threads`` fixes
the count for the whole run. The previous numba setting is restored when the run ends.
"""

from __future__ import annotations

import os
import time

SERIAL_BELOW = 16384  # numbers per step; below this a step runs on one thread (measured: docs/performance.md)


def available_threads() -> int:
    """Threads a run may use: the CPUs of this process's affinity mask, at most ``NUMBA_NUM_THREADS``."""
    import numba

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover  (not Linux)
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, numba.config.NUMBA_NUM_THREADS))


def check_threads(threads) -> int | str:
    """``threads`` as given: "auto" (or None) or an integer in [1, available_threads()]; else a one-line error."""
    if threads is None or (isinstance(threads, str) and threads == "auto"):
        return "auto"
    n = available_threads()
    if isinstance(threads, bool) or not hasattr(threads, "__index__"):  # ints and numpy ints only
        raise ValueError(f"threads must be 'auto' or an integer between 1 and {n}, got {threads!r}")
    threads = int(threads)
    if not 1 <= threads <= n:
        raise ValueError(f"threads must be 'auto' or an integer between 1 and {n} (this process's CPUs, at most "
                         f"NUMBA_NUM_THREADS), got {threads}")
    return threads


def cpu_seconds(cpus=None) -> tuple[float, float] | None:
    """(CPU seconds all processes spent busy on ``cpus`` (default: this process's affinity mask) since boot,
    CPU seconds of this process), from ``/proc/stat`` and ``os.times``; None where ``/proc/stat`` is missing."""
    try:
        cpus = os.sched_getaffinity(0) if cpus is None else cpus
        with open("/proc/stat") as fh:
            lines = [line.split() for line in fh if line.startswith("cpu") and line[3].isdigit()]
    except (AttributeError, OSError):
        return None
    busy = 0
    for f in lines:
        if int(f[0][3:]) in cpus:
            v = [int(x) for x in f[1:9]]  # user nice system idle iowait irq softirq steal (guest is in user)
            busy += sum(v) - v[3] - v[4]
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system


def others_running() -> int:
    """Runnable tasks of other processes right now: ``procs_running`` of ``/proc/stat`` minus this process's
    runnable threads (its own OpenMP threads may still spin after a parallel region). The first guess of a
    run that has nothing measured yet; 0 where it cannot be read."""
    try:
        with open("/proc/stat") as fh:
            total = next(int(line.split()[1]) for line in fh if line.startswith("procs_running"))
        own = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as fh:
                    own += fh.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:  # the thread ended meanwhile
                pass
    except (OSError, StopIteration, ValueError, IndexError):
        return 0
    return max(0, total - own)


_LAST_CHOICE: list = [None, 0]  # (clock, threads) of the last window measured in this process


class ThreadPolicy:
    """The thread count of one run's steps (module docstring). Call :meth:`tick` once before every step
    (it sets numba's count when it changes) and :meth:`close` at the end (restores the previous count);
    or use it as a context manager around the loop.

    ``history`` records each window's measurement: (step, other processes' load in cores, threads chosen).
    ``cpu`` and ``clock`` can be replaced (tests): ``cpu()`` -> (busy seconds of the cores, own seconds).
    """

    def __init__(self, threads="auto", work: int | None = None, window: float = 0.25,
                 serial_below: int = SERIAL_BELOW, cpu=cpu_seconds, clock=time.monotonic):
        import numba

        self._numba = numba
        self._previous = numba.get_num_threads()
        threads = check_threads(threads)
        self.n = available_threads()
        self._cpu, self._clock, self.window = cpu, clock, float(window)
        self.history: list[tuple[int, float, int]] = []
        self._step = 0
        self.adaptive = False
        if threads != "auto":
            start = threads
        elif self.n == 1 or (work is not None and work < serial_below):
            start = 1
        else:
            self._mark = self._cpu()
            self.adaptive = self._mark is not None
            start = self.n
            if self.adaptive:
                when, last = _LAST_CHOICE
                recent = when is not None and self._clock() - when < 4 * self.window
                start = last if recent else max(1, self.n - others_running())
                self._t0 = self._clock()
        self._current = start
        numba.set_num_threads(start)

    @property
    def threads(self) -> int:
        """The count the current step runs with."""
        return self._current

    def tick(self) -> int:
        """Before each step: at the end of a window, measure the other processes' load and set the count."""
        self._step += 1
        if not self.adaptive:
            return self._current
        now = self._clock()
        if now - self._t0 < self.window:
            return self._current
        mark = self._cpu()
        others = ((mark[0] - self._mark[0]) - (mark[1] - self._mark[1])) / (now - self._t0)
        want = max(1, min(self.n, int(self.n - max(others, 0.0) + 0.25)))
        self.history.append((self._step, others, want))
        self._mark, self._t0 = mark, now
        _LAST_CHOICE[:] = [now, want]
        if want != self._current:
            self._numba.set_num_threads(want)
            self._current = want
        return want

    def close(self) -> None:
        self._numba.set_num_threads(self._previous)

    def __enter__(self) -> ThreadPolicy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
