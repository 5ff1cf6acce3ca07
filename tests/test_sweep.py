"""`tether sweep`: spec validation, grid expansion and names, finished-run skipping, resume, and a real
local Ray sweep (2 CPUs) of tiny `lm train` runs with one run that fails at run time."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tether.core.config import ConfigError, parse_args
from tether.core.rundir import read_jsonl
from tether.sweep import (
    LOG,
    MARKER,
    SweepConfig,
    execute_run,
    expand_grid,
    load_spec,
    resolve_command,
    run_name,
    run_state,
    run_sweep,
)

# a GRPO run of a 2-layer TinyLM: 2 steps of 2 prompts x 2 samples, evaluation on 2 problems (~3 s on one core)
TINY_LM = """
command = "lm train"
out = "{out}"
[fixed]
preset = "smoke"
steps = 2
samples_every = 0
rollout = {prompts_per_step = 2, group_size = 2, max_new_tokens = 4}
eval = {n_prompts = 2, k = 1, splits = ["heldout"]}
"run.save_every" = 1
"""


def _spec(tmp_path: Path, body: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(body.replace("{out}", str(tmp_path / "out")))
    return path


def _cfg(spec: Path, **kw) -> SweepConfig:
    return SweepConfig(specs=(str(spec),), **kw)


# ------------------------------------------------------------------------------------------ validation

BAD_SPECS = [
    ('command = "flow toy"\ngird = {}', "unknown top-level key 'gird'; allowed: command"),
    ('command = "flow toi"', "command 'flow toi' does not exist; expected one of ['flow "),
    ('command = "flw toy"', "expected one of ['coherence <command>'"),
    ('command = "flow toy"\n[grid]\nmethod = []', "grid axis 'method' (table 0): got [], expected a non-empty list"),
    ('command = "flow toy"\n[grid]\nmethod = "bc"', "grid axis 'method' (table 0): got 'bc'"),
    ('command = "flow toy"\n[fixed]\nmethd = "bc"', "unknown config field 'methd'; did you mean 'method'?"),
    ('command = "flow toy"\n[grid]\nmethod = ["bc", "sac"]', "config field 'method': got 'sac', expected one of"),
    ('command = "flow toy"\n[fixed]\nsteps = "many"', "config field 'steps': got 'many', expected an int"),
    ('command = "lm train"\n[fixed]\n"run.dir" = "x"', "flag 'run.dir' is set by the sweep"),
    ('command = "flow toy"\n[fixed]\nseed = 1\n[grid]\nseed = [0, 1]', "flag 'seed' is both in [fixed] and [grid]"),
    ('command = "flow toy"\n[ray]\ncpus = 2', "[ray] key 'cpus' unknown; allowed: num_cpus, cpus_per_run"),
    ('command = "flow toy"\n[ray]\ncpus_per_run = 0.5', "config field 'ray.cpus_per_run': got 0.5"),
    ('command = "flow toy"\n[ray]\ngpus_per_run = -1', "config field 'ray.gpus_per_run': got -1"),
    ('command = "flow toy"\n[[grid]]\nseed = [0]\n[[grid]]\nseed = [0]', "two grid points share the run name 'seed=0'"),
    ('command = "flow toy"\n[fixed]\nseed = {a = [[1]]}', "sweep flag 'seed.a': got [[1]], expected a string, number"),
    ('command = "flow toy\n', "invalid TOML"),
    ("out = 'x'", "config field 'command': got None"),
]


@pytest.mark.parametrize("body, message", BAD_SPECS)
def test_bad_specs_fail_before_any_work_naming_the_value(tmp_path, body, message):
    with pytest.raises(ConfigError) as e:
        load_spec(_spec(tmp_path, body))
    assert message in str(e.value)
    assert str(tmp_path / "spec.toml") in str(e.value)
    assert not (tmp_path / "out").exists()


def test_resolve_command_uses_the_cli_lookup():
    cmd = resolve_command("flow toy")
    assert cmd.name == "toy" and cmd.config.__name__ == "ToyConfig"
    assert resolve_command("report").name == "report"
    with pytest.raises(ConfigError, match="expected one of .*'flow toy', 'flow toy-plot'"):
        resolve_command("flow")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_command("sweep")  # a sweep does not nest sweeps


# ------------------------------------------------------------------------------------------ grid and names


def test_grid_is_a_product_first_axis_slowest_and_tables_concatenate():
    points = expand_grid([{"method": ["bc", "fql"], "run.seed": [0, 1]}, {"method": ["trqam"], "kl_budget": [0.5]}])
    assert [dict(p) for p in points] == [
        {"method": "bc", "run.seed": 0}, {"method": "bc", "run.seed": 1},
        {"method": "fql", "run.seed": 0}, {"method": "fql", "run.seed": 1},
        {"method": "trqam", "kl_budget": 0.5}]
    assert expand_grid([{}]) == [()]


def test_run_names_are_deterministic_and_filesystem_safe():
    assert run_name((("method", "bc"), ("run.seed", 0))) == "method=bc,run.seed=0"
    assert run_name((("lr", 3e-4), ("json", True), ("splits", ["heldout", "ood"]))) == \
        "lr=0.0003,json=true,splits=heldout+ood"
    assert run_name((("task", "../a b/c"),)) == "task=.._a_b_c"
    assert run_name(()) == "run"
    long = run_name((("task", "x" * 300),))
    assert len(long) <= 200 and long != run_name((("task", "x" * 299),))


def test_spec_values_become_flags_the_command_parses_back(tmp_path):
    sweep = load_spec(_spec(tmp_path, TINY_LM + '"optim.bf16" = false\n[grid]\n"run.seed" = [0, 1]\n'
                                       '"optim.lr" = [1e-4]\n'))
    assert sweep.has_run_section and sweep.out == tmp_path / "out"
    assert [r.name for r in sweep.runs] == ["run.seed=0,optim.lr=0.0001", "run.seed=1,optim.lr=0.0001"]
    cmd = resolve_command("lm train")
    cfg = parse_args(cmd.config, sweep.runs[1].argv, presets=cmd.presets)
    assert cfg.preset == "smoke" and cfg.steps == 2 and cfg.run.seed == 1 and cfg.optim.lr == 1e-4
    assert cfg.eval.splits == ("heldout",) and cfg.rollout.group_size == 2 and cfg.optim.bf16 is False
    assert load_spec(_spec(tmp_path, 'command = "flow toy"', "toy.toml")).has_run_section is False


def test_dry_run_prints_names_and_commands_without_running(tmp_path, capsys):
    spec = _spec(tmp_path, 'command = "flow toy"\nout = "{out}"\n[grid]\nmethod = ["bc", "qam"]\n')
    assert run_sweep(_cfg(spec, dry_run=True)) == 0
    out = capsys.readouterr().out
    assert "2 runs of `tether flow toy`" in out and "has no run section" in out
    assert "[ fresh] method=qam" in out and "tether flow toy --method qam" in out
    assert not (tmp_path / "out").exists()


def test_the_cli_takes_exactly_one_positional_spec():
    cfg = parse_args(SweepConfig, ["s.toml", "--dry-run", "--address", "auto", "--num-cpus", "4"], positional="specs")
    assert cfg == SweepConfig(specs=("s.toml",), address="auto", dry_run=True, num_cpus=4)
    for specs in [(), ("a.toml", "b.toml")]:
        with pytest.raises(ConfigError, match="exactly one spec file"):
            run_sweep(SweepConfig(specs=specs, dry_run=True))


# ------------------------------------------------------------------------------------------ one run, no Ray

FAST_TOY = ["--steps", "2", "--bc_steps", "2", "--width", "8", "--batch_size", "8", "--json=true"]


def test_a_finished_run_gets_a_marker_and_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = tmp_path / "toy"
    res = execute_run("flow toy", FAST_TOY, str(run_dir), False, 1)
    assert res["status"] == "done" and res["returncode"] == 0 and run_state(run_dir) == "done"
    marker = json.loads((run_dir / MARKER).read_text())
    assert marker["argv"] == FAST_TOY and marker["wall_s"] >= 0 and marker["host"]
    log = (run_dir / LOG).read_text()
    assert '"method": "trqam"' in log  # the command's stdout went to the run's log
    again = execute_run("flow toy", FAST_TOY, str(run_dir), False, 1)
    assert again["status"] == "skipped" and (run_dir / LOG).read_text() == log


def _boom(cfg):
    raise RuntimeError(f"diverged at step 3 (seed {cfg.seed})\nsecond line")


@pytest.mark.parametrize("run, error", [(_boom, "RuntimeError: diverged at step 3 (seed 0)"),
                                        (lambda cfg: 3, "exit code 3")])
def test_a_failing_run_is_reported_and_gets_no_marker(tmp_path, monkeypatch, run, error):
    import tether.sweep

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    toy = resolve_command("flow toy")
    monkeypatch.setattr(tether.sweep, "resolve_command", lambda name: replace(toy, run=run))
    res = execute_run("flow toy", FAST_TOY, str(tmp_path / "bad"), False, 1)
    assert res["status"] == "failed" and res["error"] == error and res["returncode"] != 0
    assert not (tmp_path / "bad" / MARKER).exists() and run_state(tmp_path / "bad") == "fresh"


def test_stale_attempt_restarts_and_a_checkpointed_one_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sweep = load_spec(_spec(tmp_path, TINY_LM + '"model.path" = ""\n'))
    run_dir = sweep.out / sweep.runs[0].name
    run_dir.mkdir(parents=True)  # an attempt that died before its first checkpoint
    (run_dir / "config.json").write_text("{}")
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    torch.set_num_threads(2)  # execute_run must bring the process to cpus_per_run threads
    try:
        res = execute_run("lm train", list(sweep.runs[0].argv), str(run_dir), True, 1)
    finally:
        torch.set_num_threads(1)
    assert res["status"] == "done" and res["resumed"] is False
    assert json.loads((run_dir / "env.json").read_text())["torch_threads"] == 1
    assert [r["step"] for r in read_jsonl(run_dir / "eval.jsonl")] == [0, 2]
    (run_dir / MARKER).unlink()  # as if killed after the last checkpoint
    assert run_state(run_dir) == "resume"
    res = execute_run("lm train", list(sweep.runs[0].argv), str(run_dir), True, 1)
    assert res["status"] == "done" and res["resumed"] is True
    headers = [line for line in (run_dir / LOG).read_text().splitlines() if line.startswith("# ")]
    assert len(headers) == 2 and "--run.resume" not in headers[0] and headers[1].endswith("--run.resume")


def test_a_finished_run_with_other_flags_is_refused_not_skipped(tmp_path):
    spec = _spec(tmp_path, 'command = "flow toy"\nout = "{out}"\n[fixed]\nsteps = 5\n[grid]\nseed = [0]\n')
    (tmp_path / "out" / "seed=0").mkdir(parents=True)
    (tmp_path / "out" / "seed=0" / MARKER).write_text(json.dumps({"argv": ["--steps", "7", "--seed", "0"]}))
    with pytest.raises(ConfigError, match="finished with other flags"):
        run_sweep(_cfg(spec, dry_run=True))


# ------------------------------------------------------------------------------------------ a real Ray sweep


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_local_ray_sweep_runs_skips_and_reports_failures(tmp_path, ray_session, capsys):
    spec = _spec(tmp_path, TINY_LM + '[[grid]]\n"model.path" = [""]\n"run.seed" = [0, 1]\n'
                                     '[[grid]]\n"model.path" = ["/nonexistent/base"]\n')
    good, bad = ["model.path=,run.seed=0", "model.path=,run.seed=1"], "model.path=_nonexistent_base"
    out = tmp_path / "out"
    assert run_sweep(_cfg(spec)) == 1  # one run failed; the others finished
    text = capsys.readouterr().out
    assert f"FAILED {bad}: FileNotFoundError" in text and "2 done, 0 skipped" in text and "1 failed" in text
    for name in good:
        assert json.loads((out / name / MARKER).read_text())["returncode"] == 0
        assert [r["step"] for r in read_jsonl(out / name / "eval.jsonl")] == [0, 2]
    assert not (out / bad / MARKER).exists()
    rows = {r["run"]: r for r in read_jsonl(out / "summary.jsonl")}
    assert [rows[n]["status"] for n in good + [bad]] == ["done", "done", "failed"]
    assert rows[good[1]]["grid"] == {"model.path": "", "run.seed": 1} and "eval/heldout/pass@1" in rows[good[0]]
    assert "FileNotFoundError" in (out / "summary.md").read_text()

    logs = {n: (out / n / LOG).read_text() for n in good}
    assert run_sweep(_cfg(spec)) == 1  # the second invocation skips the finished runs, retries the failed one
    text = capsys.readouterr().out
    assert "2 finished earlier, 1 to run" in text and "0 done, 2 skipped" in text
    assert {n: (out / n / LOG).read_text() for n in good} == logs
    assert (out / bad / LOG).read_text().count("# ") == 2 and not (out / bad / MARKER).exists()
