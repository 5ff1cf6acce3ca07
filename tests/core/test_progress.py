"""Progress lines (first one within seconds, ETA from this process's rate, rich bar on the given stream) and
the closing summary of training commands."""

import io

import pytest

from tether.core import progress as progress_mod
from tether.core.progress import print_summary, progress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress_mod.time, "perf_counter", c)
    return c


def test_first_line_after_first_s_then_every_s_and_at_the_end(clock):
    buf = io.StringIO()
    with progress(100, "gen", stream=buf, every_s=10.0, first_s=2.0) as p:
        for t in (1.0, 2.5, 5.0, 12.0, 13.0):  # lines at 2.5 (past first_s) and 13 (every_s after that)
            clock.t = t
            p.update(1)
        clock.t = 14.0
        p.update(95)
    lines = buf.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["2/100", "5/100", "100/100"]
    assert lines[0] == "[gen] 2/100 elapsed 2s eta 122s"  # 2.5 s for 2 items, 98 to go


def test_eta_counts_only_this_processes_items(clock):
    buf = io.StringIO()
    with progress(10, "resumed", stream=buf, every_s=0.0, initial=5) as p:
        p.update(0)
        clock.t = 10.0
        p.update(1)  # one item in 10 s, 4 to go: 40 s (not 10 / 6 * 4)
    assert buf.getvalue().splitlines() == ["[resumed] 5/10 elapsed 0s eta ?", "[resumed] 6/10 elapsed 10s eta 40s"]


def test_rich_bar_writes_to_the_given_stream_not_stdout(capsys):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    with progress(3, "bar", stream=tty) as p:
        for _ in range(3):
            p.update(1, loss=0.5)
    assert "bar" in tty.getvalue() and capsys.readouterr().out == ""


def test_summary_is_a_few_short_lines_with_the_next_commands(capsys):
    text = print_summary("lm train done (6 steps, 20 s)", "runs/x", {"greedy acc": 0.5, "reward": None, "n": 3})
    assert capsys.readouterr().out == text + "\n"
    assert text.splitlines() == ["lm train done (6 steps, 20 s): runs/x", "  greedy acc 0.500, n 3", "next:",
                                 "  tether report runs/x"]
    with_tb = print_summary("done", "runs/x", {}, tensorboard=True, stream=io.StringIO())
    assert with_tb.splitlines()[1:] == ["next:", "  tether report runs/x", "  tensorboard --logdir runs/x/tb"]
