import json
import subprocess
import sys

import pytest

from tether.cli import main
from tether.commands import FAMILIES, family_commands, top_commands


def test_version_and_help_list_commands(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("tether 0.")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ["coherence", "lm", "flow", "report", "demo"]:
        assert f"  {name} " in out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "tether.cli", "--help"], capture_output=True, text=True, check=True)
    assert "report" in out.stdout


def test_every_subcommand_has_help_from_field_docs(capsys):
    from tether.core.config import field_docs, leaf_fields

    commands = [([c.name], c) for c in top_commands()]
    for fam in FAMILIES:
        commands += [([fam, c.name], c) for c in family_commands(fam)]
    for argv, cmd in commands:
        assert main(argv + ["--help"]) == 0
        out = capsys.readouterr().out
        for path, (_, owner, name) in leaf_fields(cmd.config).items():
            doc = field_docs(owner).get(name)
            assert doc, f"{' '.join(argv)}: field {path} has no docstring"
            if cmd.presets and path == "preset":  # shown once, as `--preset NAME`
                continue
            assert doc in out


def test_help_after_a_preset_shows_that_presets_defaults(capsys):
    assert main(["lm", "train", "--preset", "smoke", "--help"]) == 0
    out = capsys.readouterr().out
    assert "defaults below are those of --preset smoke" in out
    assert "  --steps\n      GRPO steps (rollout batches). [an int; default: 6]" in out
    assert "[a str; default: 'base:medium']" in out and "  --run.save-every\n" in out
    assert sum(line.startswith("  --preset") for line in out.splitlines()) == 1
    assert main(["lm", "train", "--help"]) == 0
    assert "GRPO steps (rollout batches). [an int; default: 100]" in capsys.readouterr().out
    assert main(["lm", "train", "--preset", "nope", "--help"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_sweep_help_names_one_spec_file(capsys):
    assert main(["sweep", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tether sweep SPEC.toml [--field VALUE ...]")
    positional = out.split("  SPEC.toml (positional)\n")[1].splitlines()[0]
    assert "one TOML file" in positional and "comma-separated" not in positional


def test_bad_flag_is_a_clear_error(capsys):
    assert main(["demo", "--sectons", "core"]) == 2
    err = capsys.readouterr().err
    assert "unknown config field 'sectons'; did you mean 'sections'" in err
    assert main(["demo", "--sections", "core,nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["nonsense"]) == 2


def _synthetic_run(path, lr, seed):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"optim": {"lr": lr}, "seed": seed}))
    rows = [{"step": s, "loss/policy": 1.0 / s + seed * 0.01, "reward/mean": s * lr} for s in range(1, 11)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "eval.jsonl").write_text(json.dumps({"step": 10, "eval/accuracy": lr}) + "\n")


def test_report_on_synthetic_run_dirs(tmp_path, capsys):
    runs = []
    for lr in (0.1, 0.2):
        for seed in (0, 1):
            _synthetic_run(tmp_path / f"lr{lr}_seed{seed}", lr, seed)
            runs.append(str(tmp_path / f"lr{lr}_seed{seed}"))
    assert main(["report", *runs, "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "eval_curves.png").exists()
    assert "| optim.lr | 0.1 | 0.1 | 0.2 | 0.2 |" in md  # config diff between runs
    assert "reward/mean" in md and "| lr0.2_seed1 | 10 |" in md


def test_report_rejects_non_run_dirs(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not run directories" in capsys.readouterr().err


def test_plot_groups_seeds(tmp_path):
    from tether.core.plots import group_runs

    for lr in (0.1, 0.2):
        for seed in (0, 1, 2):
            _synthetic_run(tmp_path / f"lr{lr}_seed{seed}", lr, seed)
    groups = group_runs(sorted(tmp_path.iterdir()))
    assert sorted(groups) == ["lr=0.1", "lr=0.2"] and all(len(v) == 3 for v in groups.values())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_placeholder_or_commands(family, capsys):
    assert main([family, "--help"]) == 0
    assert capsys.readouterr().out


def test_plot_groups_keep_real_differences_named_name(tmp_path):
    """`correction.name` differs between runs: they are two groups, not two seeds of one."""
    from tether.core.plots import group_runs, is_noise_field

    for name in ("none", "dcmdp"):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"correction": {"name": name}, "run": {"dir": str(d), "seed": 0}}))
    assert len(group_runs(sorted(tmp_path.iterdir()))) == 2
    assert is_noise_field("run.dir") and is_noise_field("eval.seed") and not is_noise_field("correction.name")


def test_an_optional_dependency_missing_at_run_time_is_one_line_naming_its_extra(monkeypatch, capsys):
    import tether.cli as cli

    def needs_ogbench(argv):
        import ogbench_not_installed_here  # noqa: F401

    monkeypatch.setattr(cli, "_dispatch", needs_ogbench)
    monkeypatch.setitem(cli.EXTRAS, "ogbench_not_installed_here", "flow")
    assert main(["flow", "data"]) == 2
    assert capsys.readouterr().err.strip() == ("error: ogbench_not_installed_here is not installed: "
                                               "pip install 'tether-rl[flow]'")
    monkeypatch.setattr(cli, "_dispatch", lambda argv: __import__("not_an_extra_at_all"))
    with pytest.raises(ModuleNotFoundError):   # a missing module that is no extra is a real bug: traceback
        main(["x"])


def test_a_requested_stop_is_one_stderr_line_and_its_exit_code(monkeypatch, capsys):
    import tether.cli as cli
    from tether.core.signals import StopRequested

    line = "stopped by SIGTERM at step 12; checkpoint saved: runs/x/checkpoints/step_0000012 (resume with --run.resume)"

    def stopped(argv):
        raise StopRequested(line, 143)

    monkeypatch.setattr(cli, "_dispatch", stopped)
    assert main(["flow", "train"]) == 143
    assert capsys.readouterr() == ("", line + "\n")


def test_ctrl_c_is_one_line_and_130_unless_debugging(monkeypatch, capsys):
    import tether.cli as cli

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_dispatch", interrupted)
    assert main(["flow", "train"]) == 130
    assert capsys.readouterr().err == "interrupted by Ctrl-C\n"
    monkeypatch.setenv("TETHER_DEBUG", "1")
    with pytest.raises(KeyboardInterrupt):
        main(["flow", "train"])
