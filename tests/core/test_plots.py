import json

from tether.core.plots import (
    group_runs,
    is_bookkeeping_field,
    is_noise_field,
    label_fields,
    plot_curves,
    run_labels,
)


def fake_run(path, config):
    path.mkdir(parents=True)
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    rows = [{"step": s, "reward/mean": s * 0.1} for s in range(1, 4)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cfg(correction="none", seed=0, **run):
    return {"correction": {"name": correction}, "run": {"dir": f"runs/{correction}{seed}", "seed": seed,
                                                        "tensorboard": False, **run}}


def test_bookkeeping_fields_are_noise_but_real_choices_named_name_are_not():
    for key in ("run.dir", "run.name", "run.tensorboard", "run.wandb", "run.resume", "run.log_every",
                "run.save_every", "samples_every", "out", "neural.out", "json"):
        assert is_bookkeeping_field(key) and is_noise_field(key), key
    for key in ("correction.name", "model.path", "task.name", "optim.lr", "eval.every"):
        assert not is_noise_field(key), key
    assert is_noise_field("run.seed") and is_noise_field("eval.seed") and not is_bookkeeping_field("run.seed")


def test_legends_name_only_fields_that_differ_and_matter(tmp_path):
    # the runs also differ in run.dir, run.tensorboard and run.log_every; seeds are grouped over
    runs = [fake_run(tmp_path / "a0", cfg("none", 0)), fake_run(tmp_path / "a1", cfg("none", 1, tensorboard=True)),
            fake_run(tmp_path / "b0", cfg("dcmdp", 0, log_every=5))]
    groups = group_runs(runs)
    assert list(groups) == ["correction=none", "correction=dcmdp"]   # not name=none, no run.* field
    assert groups["correction=none"] == runs[:2]
    assert plot_curves(runs, ["reward/mean"], tmp_path / "c.png").stat().st_size > 1000


def test_a_field_set_in_one_run_only_is_a_difference(tmp_path):
    base = {"model": {"path": "", "lora_r": None}, "run": {"seed": 0}}
    other = {"model": {"path": "", "lora_r": 8}, "run": {"seed": 0}}
    runs = [fake_run(tmp_path / "x", base), fake_run(tmp_path / "y", base | {"run": {"seed": 1}}),
            fake_run(tmp_path / "z", other)]
    assert sorted(group_runs(runs)) == ["lora_r=8", "lora_r=None"]


def test_labels_use_the_fields_that_split_the_runs():
    cfgs = [{"preset": p, "steps": s, "algo.reward": r} for p, s, r in
            [("smoke", 20, "correct"), ("demo", 30, "cp"), ("demo", 30, "ent")]]
    assert label_fields(cfgs) == ["preset", "algo.reward"]   # steps moves with preset: it adds nothing


def test_run_labels_are_unique(tmp_path):
    runs = [fake_run(tmp_path / "s0", cfg("none", 0)), fake_run(tmp_path / "s1", cfg("none", 1)),
            fake_run(tmp_path / "again", cfg("none", 1)), fake_run(tmp_path / "d", cfg("dcmdp", 0)),
            fake_run(tmp_path / "p" / "run", None), fake_run(tmp_path / "q" / "run", None)]
    labels = run_labels(runs)
    assert labels[runs[0]] == ("correction=none", "correction=none/seed=0")
    assert labels[runs[3]] == ("correction=dcmdp", "correction=dcmdp")
    assert labels[runs[4]][1] == "p/run" and labels[runs[5]][1] == "q/run"
    assert len({lab for _, lab in labels.values()}) == len(runs)
