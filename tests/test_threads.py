"""spdekit.threads: the thread count of a run's numba kernels ("auto" follows the other processes' load).

The decisions are tested with a fake clock and a fake CPU-time reader; the run itself with real threads:
the numbers do not depend on the count. Nothing here times anything."""

import numba
import numpy as np
import pytest

import spdekit as sk
from spdekit import threads as T


class FakeNumba:
    def __init__(self, n=1):
        self.n, self.calls = n, []

    def get_num_threads(self):
        return self.n

    def set_num_threads(self, n):
        self.calls.append(n)
        self.n = n


@pytest.fixture
def fake(monkeypatch):
    """Four available threads, numba's setter recorded, no earlier choice, nothing runnable elsewhere."""
    f = FakeNumba(4)
    monkeypatch.setattr(numba, "set_num_threads", f.set_num_threads)
    monkeypatch.setattr(numba, "get_num_threads", f.get_num_threads)
    monkeypatch.setattr(T, "available_threads", lambda: 4)
    monkeypatch.setattr(T, "others_running", lambda: 0)
    monkeypatch.setattr(T, "_LAST_CHOICE", [None, 0])
    return f


class Machine:
    """Fake clock and /proc/stat: ``others`` cores busy with other processes, ``own`` cores with this one."""

    def __init__(self):
        self.t, self.busy, self.own = 0.0, 0.0, 0.0

    def clock(self):
        return self.t

    def cpu(self):
        return self.busy, self.own

    def advance(self, seconds, others, own):
        self.t += seconds
        self.busy += seconds * (others + own)
        self.own += seconds * own


def test_auto_follows_the_load(fake):
    m = Machine()
    pol = T.ThreadPolicy("auto", work=10**6, window=0.25, cpu=m.cpu, clock=m.clock)
    assert pol.threads == 4  # nothing runnable elsewhere at the start: every thread
    for others, want in ((0.0, 4), (2.0, 2), (3.0, 1), (3.9, 1), (0.6, 3), (0.1, 4)):
        m.advance(0.3, others, own=pol.threads)
        assert pol.tick() == want, (others, want)
    assert [h[2] for h in pol.history] == [4, 2, 1, 1, 3, 4]
    assert pol.history[1][1] == pytest.approx(2.0)
    m.advance(0.1, 4.0, own=pol.threads)  # inside a window: no new decision
    assert pol.tick() == 4
    pol.close()
    assert fake.n == 4  # restored


def test_auto_starts_from_the_runnable_tasks_and_the_last_choice(fake, monkeypatch):
    m = Machine()
    monkeypatch.setattr(T, "others_running", lambda: 3)
    with T.ThreadPolicy("auto", work=10**6, cpu=m.cpu, clock=m.clock) as pol:
        assert pol.threads == 1  # three runnable tasks elsewhere
        m.advance(0.3, 1.0, own=1)
        assert pol.tick() == 3
    with T.ThreadPolicy("auto", work=10**6, cpu=m.cpu, clock=m.clock) as pol:
        assert pol.threads == 3  # the last window, just measured, wins over the instantaneous guess
    m.advance(5.0, 0.0, own=0)
    with T.ThreadPolicy("auto", work=10**6, cpu=m.cpu, clock=m.clock) as pol:
        assert pol.threads == 1  # an old choice is forgotten


def test_fixed_small_and_unmeasurable(fake):
    m = Machine()
    with T.ThreadPolicy(2, work=10**6, cpu=m.cpu, clock=m.clock) as pol:
        m.advance(1.0, 3.9, own=2)
        assert pol.tick() == 2 and not pol.adaptive
    with T.ThreadPolicy("auto", work=T.SERIAL_BELOW - 1, cpu=m.cpu, clock=m.clock) as pol:
        assert pol.threads == 1 and not pol.adaptive  # a launch costs more than it saves
    with T.ThreadPolicy("auto", work=10**6, cpu=lambda: None, clock=m.clock) as pol:
        assert pol.threads == 4 and not pol.adaptive  # no /proc/stat: every thread


@pytest.mark.parametrize("bad", [0, -1, 5, 1.5, "2", True, "all"])
def test_bad_thread_counts_name_the_parameter(fake, bad):
    with pytest.raises(ValueError, match=r"^threads must be 'auto' or an integer between 1 and 4"):
        T.check_threads(bad)


def test_check_threads_accepts():
    n = T.available_threads()
    assert T.check_threads(None) == T.check_threads("auto") == "auto"
    assert T.check_threads(np.int64(n)) == n and T.check_threads(1) == 1


def test_cpu_seconds_reads_this_machine():
    got = T.cpu_seconds()
    if got is None:
        pytest.skip("no /proc/stat here")
    busy, own = got
    assert busy >= 0 and own >= 0 and T.others_running() >= 0


@pytest.mark.parametrize("threads", ["auto", 1, None])
def test_simulate_results_do_not_depend_on_threads(threads):
    spde = sk.AnisotropicSPDE.paper_anisotropic(32)
    u0 = np.random.default_rng(0).uniform(0, 1, (8, 1, 32, 32))  # 8192 numbers: 'auto' is serial here
    ref = sk.simulate(spde, u0, 0.0, 0.02, 1e-3, seed=3, threads=T.available_threads(), backend="numba")
    before = numba.get_num_threads()
    got = sk.simulate(spde, u0, 0.0, 0.02, 1e-3, seed=3, threads=threads, backend="numba")
    assert numba.get_num_threads() == before  # restored after the run
    np.testing.assert_array_equal(got.states, ref.states)


def test_simulate_rejects_bad_threads():
    spde = sk.AnisotropicSPDE.paper_anisotropic(8)
    with pytest.raises(ValueError, match="^threads must be"):
        sk.simulate(spde, np.zeros((8, 8)), 0.0, 0.01, 1e-3, threads=0)
