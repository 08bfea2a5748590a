"""Helpers for tests that interrupt a child process."""

import signal


def sigint_default():
    """``preexec_fn`` for a child that a test interrupts with SIGINT: a shell starts background jobs with
    SIGINT ignored, the child inherits that, and Python then installs no KeyboardInterrupt handler (the
    signal would be lost). Reset it to the default so the child behaves as under a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
