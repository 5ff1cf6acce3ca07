"""Crash-proof runs: SIGTERM / Ctrl-C become a checkpointed stop, and worker processes die with their parent.

A training loop stops gracefully like this (`tether.cli.main` prints the one-line message to stderr and exits
with `stop.exit_code`: 130 after SIGINT, 143 after SIGTERM, the shell's 128 + signal number):

    with graceful_stop() as stop:
        while step < total:
            ...one step...
            if stop.requested:
                path = save()
                raise StopRequested(stop.message(step, path), stop.exit_code)

Inside `graceful_stop` the first SIGTERM or SIGINT only sets `stop.requested` (and prints one notice line), so
the step in progress finishes and the loop saves; a second Ctrl-C while that stop is pending raises
KeyboardInterrupt at once (a second SIGTERM is ignored: the stop is already under way), which `tether.cli.main`
reports as the one line "interrupted by Ctrl-C", exit 130. Pass `stop.exit_code`: StopRequested exits 1 without.

Worker processes (evaluation envs, data generators) call `worker_init(parent_pid)` first thing, with the
parent's `os.getpid()` recorded before the fork or spawn: they ignore Ctrl-C (which the terminal sends to the
whole process group; the parent handles it and shuts them down) and, on Linux, are SIGKILLed by the kernel when
the parent dies, even by `kill -9`. Start them inside `sigint_blocked(ctx)` so a Ctrl-C during their start-up
(seconds, under spawn) cannot print a KeyboardInterrupt traceback either:

    ctx = mp.get_context("spawn")
    with sigint_blocked(ctx):
        pool = ctx.Pool(n, initializer=worker_init, initargs=(os.getpid(),))
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Stop", "StopRequested", "graceful_stop", "die_with_parent", "worker_init", "sigint_blocked"]

PR_SET_PDEATHSIG = 1
"""prctl option (linux/prctl.h): the signal this process gets when the thread that created it exits."""


class StopRequested(Exception):
    """A requested stop (not a failure): `str(e)` is the one line for stderr, `e.exit_code` the exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Stop:
    """What `graceful_stop` yields: whether a stop was requested, and by which signal."""

    requested: bool = False
    """True once SIGTERM or SIGINT arrived: finish the step, save, raise StopRequested."""
    signal_name: str | None = None
    """"SIGTERM" or "SIGINT" once requested."""
    active: bool = False
    """True where the handlers are installed (the main thread); elsewhere `requested` stays False."""

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (130 SIGINT, 143 SIGTERM), the shell's convention; 0 before a request."""
        return 128 + signal.Signals[self.signal_name].value if self.signal_name else 0

    def message(self, step: int, checkpoint_path: object = None) -> str:
        """The one-line report, e.g. "stopped by SIGTERM at step 12; checkpoint saved: runs/x/... (resume with
        --run.resume)"; `checkpoint_path` None says no checkpoint was saved."""
        saved = (f"checkpoint saved: {checkpoint_path} (resume with --run.resume)" if checkpoint_path is not None
                 else "no checkpoint saved")
        return f"stopped by {self.signal_name or 'request'} at step {step}; {saved}"


@contextmanager
def graceful_stop(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT), *,
                  notify: bool = True) -> Iterator[Stop]:
    """While active, the first of `signals` sets `stop.requested` instead of raising or killing; see the module
    docstring for the loop. A second SIGINT while the stop is pending raises KeyboardInterrupt. `notify` writes
    one line to stderr when the first signal arrives, so the user knows the step is being finished.

    The previous handlers come back on exit. Outside the main thread (where Python cannot set handlers) this is
    a no-op yielding an inactive Stop. A signal the process ignores (SIG_IGN, e.g. SIGINT of a `nohup` or
    background job) stays ignored."""
    stop = Stop()

    def handler(signum: int, frame) -> None:
        if stop.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stop.requested, stop.signal_name = True, signal.Signals(signum).name
        if notify:  # os.write, not print: a handler may run in the middle of a print to stderr
            os.write(2, f"{stop.signal_name} received: stopping after the current step, saving a checkpoint "
                        "(Ctrl-C again to abort without one)\n".encode())

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            old = signal.getsignal(sig)
            if old is not signal.SIG_IGN:
                previous[sig] = old
                signal.signal(sig, handler)
        stop.active = True
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)  # None: a handler not set from Python


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux prctl PR_SET_PDEATHSIG); True if set.

    `parent_pid` is the parent's `os.getpid()` recorded before the fork or spawn: if the parent already died
    before the request (a race), `os.getppid()` differs and this process kills itself now. The kernel watches
    the parent *thread* that started this process, so start workers from a long-lived thread (the main one);
    under forkserver the parent is the server. Elsewhere (macOS, Windows, no prctl) a no-op returning False."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # here, not at the top: `tether --help` imports this module through tether.cli

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        ok = prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if ok and parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    return ok


def worker_init(parent_pid: int | None = None) -> None:
    """First call in every worker process: ignore SIGINT (the parent handles Ctrl-C and shuts the workers down),
    restore SIGTERM's default (a forked worker inherits the parent's `graceful_stop` handler, which would make
    `Process.terminate` a no-op), unblock SIGINT if `sigint_blocked` blocked it, and `die_with_parent`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending Ctrl-C is dropped: it is ignored
    die_with_parent(parent_pid)


@contextmanager
def sigint_blocked(ctx=None) -> Iterator[None]:
    """Block SIGINT in this thread while worker processes start from the multiprocessing context `ctx`: they
    inherit the block (through fork and exec) until their `worker_init` ignores it, so a Ctrl-C during their
    start-up prints no traceback. A Ctrl-C that came meanwhile reaches this process when the block lifts, not
    lost. A no-op where pthread_sigmask is absent."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    if ctx is None or ctx.get_start_method() != "fork":
        # start the resource tracker now: a spawn / forkserver start launches it on first use, and launching it
        # unblocks SIGINT in this thread (CPython's resource_tracker.ensure_running), undoing the block below
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
