import json

import pytest

from tether.testing.chaos import main


@pytest.mark.slow
def test_twenty_killed_runs_resume_to_the_uninterrupted_result(tmp_path, capsys):
    """kill -9 at random moments, 20 times over lm and flow runs (minutes): every run finishes, equals the
    uninterrupted run, leaves no corrupt checkpoint and no orphan worker."""
    pytest.importorskip("ogbench")
    assert main(["--trials", "20", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines[:-1]]
    assert len(rows) == 20 and all(r["kills"] >= 1 for r in rows)
    assert lines[-1].startswith("chaos: 20/20 resumed and equal")
