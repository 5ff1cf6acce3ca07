"""graceful_stop, StopRequested, die_with_parent, worker_init, sigint_blocked: real signals, mostly sent to child
Python processes (a stop must reach `tether.cli.main` the way a trainer's would), the rest raised in-process
with safety handlers installed, so a broken graceful_stop fails a test instead of killing pytest."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tether.core import signals
from tether.core.signals import Stop, StopRequested, die_with_parent, graceful_stop

REPO = Path(__file__).resolve().parents[2]
LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux-only")

# A trainer under `tether.cli.main`: steps of argv[2] seconds; the loop of the signals module docstring.
TRAINER = """
import sys, time
from pathlib import Path
import tether.cli as cli
from tether.core.signals import StopRequested, graceful_stop

out, step_s = Path(sys.argv[1]), float(sys.argv[2])

def train(argv):
    with graceful_stop() as stop:
        step = 0
        print("ready", flush=True)
        while step < 1000:
            t0 = time.monotonic()
            time.sleep(step_s)  # the step; a signal now must not cut it short
            step += 1
            (out / "steps").write_text(f"{step} {time.monotonic() - t0}")
            if stop.requested:
                path = out / f"step_{step}"
                path.write_text("checkpoint")
                raise StopRequested(stop.message(step, path), stop.exit_code)
    return 0

cli._dispatch = train
sys.exit(cli.main([]))
"""

# A parent that starts one worker (start method argv[1]) and waits; the worker prints its pid once set up.
PARENT = """
import multiprocessing as mp, os, signal, sys, time
from tether.core.signals import sigint_blocked, worker_init

def work(parent_pid, init):
    if init:
        worker_init(parent_pid)
    print(os.getpid(), flush=True)
    time.sleep(120)

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    ctx.Process(target=work, args=(os.getpid(), sys.argv[2] == "init")).start()
    time.sleep(120)
"""

# A parent that sends SIGINT to a worker at once, while it still starts up (spawn: imports for ~0.1-1 s).
STARTUP = """
import multiprocessing as mp, os, signal, sys
from tether.core.signals import sigint_blocked, worker_init

def work(parent_pid):
    worker_init(parent_pid)
    print("worker ran", flush=True)

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    with sigint_blocked(ctx):
        p = ctx.Process(target=work, args=(os.getpid(),))
        p.start()
    os.kill(p.pid, signal.SIGINT)
    p.join(60)
    print("exitcode", p.exitcode, flush=True)
"""


def _default_sigint() -> None:
    # the child of a terminal user: Ctrl-C at its default even when pytest itself runs as a background job (a
    # non-interactive shell starts those with SIGINT ignored, which a child inherits and graceful_stop respects)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(tmp_path: Path, source: str, *args: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(source)
    return subprocess.Popen([sys.executable, str(script), *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0, preexec_fn=_default_sigint)


def _line(stream, timeout: float = 60.0) -> str:
    """The next line of an unbuffered child pipe, failing after `timeout` seconds instead of hanging."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "the child printed nothing in time"
    return stream.readline().decode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed orphan may stay a zombie until its new parent (pid 1 here) reaps it: that is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ------------------------------------------------------------------------ graceful_stop, through tether.cli


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_first_signal_finishes_the_step_saves_and_exits_with_one_line(tmp_path, sig, code):
    proc = _start(tmp_path, TRAINER, str(tmp_path), "1.0")
    assert _line(proc.stdout) == "ready\n"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    step, took = (tmp_path / "steps").read_text().split()
    assert step == "1" and float(took) >= 1.0  # the step in progress ran to its end, and no other began
    assert (tmp_path / "step_1").read_text() == "checkpoint"
    lines = err.decode().splitlines()
    assert "Traceback" not in err.decode() and len(lines) == 2
    assert lines[0].startswith(f"{sig.name} received: stopping after the current step")
    assert lines[1] == f"stopped by {sig.name} at step 1; checkpoint saved: {tmp_path / 'step_1'} " \
                       "(resume with --run.resume)"


def test_second_ctrl_c_while_a_stop_is_pending_ends_the_run_at_once(tmp_path):
    proc = _start(tmp_path, TRAINER, str(tmp_path), "60")  # a step far longer than the test may wait
    assert _line(proc.stdout) == "ready\n"
    proc.send_signal(signal.SIGINT)
    assert _line(proc.stderr).startswith("SIGINT received: stopping after the current step")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 30 and proc.returncode == 130
    assert err.decode() == "interrupted by Ctrl-C\n"  # one line from tether.cli.main, no traceback
    assert not (tmp_path / "steps").exists() and not list(tmp_path.glob("step_*"))


# ------------------------------------------------------------------------------- graceful_stop, in-process


@pytest.fixture
def safety_handlers():
    """Handlers that fail the test instead of killing pytest, should graceful_stop let a signal through."""
    def fail(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} escaped graceful_stop")

    old = {s: signal.signal(s, fail) for s in (signal.SIGTERM, signal.SIGINT)}
    yield fail
    for s, h in old.items():
        signal.signal(s, h)


def test_flag_then_sigterm_ignored_then_ctrl_c_raises_and_handlers_come_back(safety_handlers):
    with graceful_stop(notify=False) as stop:
        assert stop.active and not stop.requested and stop.exit_code == 0
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM" and stop.exit_code == 143
        signal.raise_signal(signal.SIGTERM)  # already stopping: ignored, the first signal is kept
        assert stop.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is safety_handlers
    assert signal.getsignal(signal.SIGINT) is safety_handlers


def test_ignored_signals_stay_ignored_and_other_threads_get_a_no_op(safety_handlers):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a `nohup` / background job
    with graceful_stop():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not safety_handlers
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN

    seen = []

    def in_thread():
        with graceful_stop() as stop:
            seen.append((stop.active, signal.getsignal(signal.SIGTERM)))

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen == [(False, safety_handlers)]


def test_message_and_exit_code_for_the_one_line_report():
    stop = Stop(requested=True, signal_name="SIGINT")
    assert stop.exit_code == 130 and Stop(True, "SIGTERM").exit_code == 143
    assert stop.message(12, "runs/x/checkpoints/step_0000012") == \
        "stopped by SIGINT at step 12; checkpoint saved: runs/x/checkpoints/step_0000012 (resume with --run.resume)"
    assert stop.message(3) == "stopped by SIGINT at step 3; no checkpoint saved"
    e = StopRequested(stop.message(3), stop.exit_code)
    assert isinstance(e, Exception) and str(e) == stop.message(3) and e.exit_code == 130


# ------------------------------------------------------------------------------ die_with_parent, worker_init


@LINUX
@pytest.mark.parametrize("method", ["fork", "spawn"])  # the evaluator forks, the data generator spawns
def test_worker_dies_with_its_parent_on_sigkill(tmp_path, method):
    parent = _start(tmp_path, PARENT, method, "init")
    worker = int(_line(parent.stdout))
    parent.kill()
    parent.wait(timeout=30)
    assert _gone_within(worker, 5.0), f"worker {worker} outlived its SIGKILLed parent"


@LINUX
def test_without_worker_init_the_worker_outlives_its_parent(tmp_path):
    """The control: what `kill -9` of `tether flow train` did to its evaluation workers before."""
    parent = _start(tmp_path, PARENT, "fork", "bare")
    worker = int(_line(parent.stdout))
    parent.kill()
    parent.wait(timeout=30)
    try:
        assert not _gone_within(worker, 1.0)
    finally:
        os.kill(worker, signal.SIGKILL)


@LINUX
def test_die_with_parent_closes_the_race_with_a_parent_that_already_died():
    code = "import os; from tether.core.signals import die_with_parent as d; print(d(os.getppid())); d({})"
    ok = subprocess.run([sys.executable, "-c", code.format("os.getppid()")], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == "True\n"
    # a process is never its own parent: seen as "the parent died before prctl", it kills itself at once
    dead = subprocess.run([sys.executable, "-c", code.format("os.getpid()")], capture_output=True, text=True)
    assert dead.returncode == -signal.SIGKILL and dead.stderr == ""


def test_die_with_parent_is_a_no_op_where_prctl_is_unavailable(monkeypatch):
    import ctypes

    monkeypatch.setattr(sys, "platform", "darwin")
    assert die_with_parent(os.getpid()) is False  # would kill pytest if it went on
    monkeypatch.setattr(sys, "platform", "linux")

    def no_libc(*args, **kwargs):
        raise OSError("no libc")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert die_with_parent(os.getpid()) is False
    monkeypatch.setattr(ctypes, "CDLL", lambda *args, **kwargs: object())  # a libc without prctl
    assert die_with_parent(os.getpid()) is False


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ctrl_c_during_worker_start_up_prints_no_traceback(tmp_path, method):
    proc = _start(tmp_path, STARTUP, method)
    out, err = proc.communicate(timeout=60)
    assert out.decode() == "worker ran\nexitcode 0\n" and err.decode() == ""


def _echo(conn, parent_pid: int) -> None:
    signals.worker_init(parent_pid)
    conn.send("ready")
    while (msg := conn.recv()) != "stop":
        conn.send(msg)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a worker from pytest")
def test_forked_worker_ignores_ctrl_c_but_terminate_still_kills_it(capfd, safety_handlers):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    with graceful_stop(notify=False):  # the worker inherits this handler: worker_init must undo it for SIGTERM
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_echo, args=(child, os.getpid()), daemon=True)
        p.start()
        assert parent.recv() == "ready"
        os.kill(p.pid, signal.SIGINT)
        parent.send("ping")
        assert parent.recv() == "ping"  # still there, still working
        p.terminate()
        p.join(10)
    assert p.exitcode == -signal.SIGTERM
    assert "KeyboardInterrupt" not in capfd.readouterr().err
