"""OGBench: local data generation, relabelled buffers, parallel evaluation, and `tether flow train` end to end.

Uses a tiny generated scene dataset (short episodes) and short eval episodes; real MuJoCo envs throughout.
"""

import functools
import json
import multiprocessing as mp
import os
import signal

import numpy as np
import pytest
import torch

pytest.importorskip("ogbench")

from tether.cli import main  # noqa: E402
from tether.flow.ogbench import data as od  # noqa: E402
from tether.flow.ogbench import env as oe  # noqa: E402
from tether.flow.ogbench.env import ParallelEvaluator, Task, load_buffer  # noqa: E402
from tether.testing.docs import undocumented  # noqa: E402

SPEC = od.DataSpec("scene-play", episodes=2, seed=0, episodes_per_shard=1, episode_steps=120)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ogbench")
    od.generate(SPEC, out)
    return out


def test_generated_files_load_with_ogbench_and_match_the_manifest(data_dir):
    from ogbench.utils import load_dataset

    d = load_dataset(str(data_dir / "scene-play-v0.npz"), add_info=True)
    assert d["observations"].shape == (2 * 119, 40) and d["actions"].shape == (2 * 119, 5)
    assert {"qpos", "qvel", "button_states", "next_observations"} <= set(d)
    assert np.abs(d["actions"]).max() <= 1.0
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["spec"]["episodes"] == 2 and manifest["files"]["scene-play-v0-val.npz"]["transitions"] == 120
    od.verify(data_dir)
    assert not (data_dir / ".shards").exists()


def test_shards_are_deterministic_and_generation_resumes(tmp_path, monkeypatch):
    spec = od.DataSpec("puzzle-3x3-play", episodes=2, seed=1, episodes_per_shard=1, episode_steps=30)
    od.generate_shard(spec, "train", 0, 1, tmp_path / "a.npz")
    od.generate_shard(spec, "train", 0, 1, tmp_path / "b.npz")
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    # an interrupted run left shard train-0 behind: resuming generates only the other two
    (tmp_path / "out" / ".shards").mkdir(parents=True)
    (tmp_path / "out" / ".shards" / "spec.json").write_text(json.dumps(od.asdict(spec)))
    od.generate_shard(spec, "train", 0, 1, tmp_path / "out" / ".shards" / "train-00000.npz")
    calls = []
    real = od.generate_shard
    monkeypatch.setattr(od, "generate_shard", lambda *a: calls.append(a[1:3]) or real(*a))
    od.generate(spec, tmp_path / "out")
    assert sorted(calls) == [("train", 1), ("val", 0)]
    with pytest.raises(ValueError, match="different dataset"):
        od.generate(od.DataSpec("puzzle-3x3-play", episodes=3, seed=1, episodes_per_shard=1), tmp_path / "out")


def test_generation_reports_per_episode_from_the_pool_with_a_first_line_at_once(tmp_path, monkeypatch, capsys):
    """One shard of 2 train episodes + 1 val episode on 2 processes: the bar moves per episode (1/3 exists), not per
    shard, and a line names the work before the first episode ends."""
    monkeypatch.setattr(od, "progress", functools.partial(od.progress, every_s=0.0))  # every update prints
    spec = od.DataSpec("puzzle-3x3-play", episodes=2, seed=1, episodes_per_shard=2, episode_steps=30)
    od.generate(spec, tmp_path, workers=2)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"puzzle-3x3-play: generating 3 episodes of 30 steps into {tmp_path} with 2 worker(s)"
    assert [line.split()[2] for line in err[1:]] == ["1/3", "2/3", "3/3"] and all(" eta " in e for e in err[1:])
    od.verify(tmp_path)


@pytest.mark.parametrize("env, match", [("antmaze-large-navigate", "experts"), ("scene-noisy", "<domain>-play"),
                                        ("kitchen-play", "<domain>-play")])
def test_unsupported_datasets_are_refused_with_the_reason(env, match):
    with pytest.raises(ValueError, match=match):
        od.validate_env(env)


def test_task_names_and_missing_data_errors(tmp_path):
    t = Task.parse("puzzle-3x3-play-singletask-task4-v0")
    assert (t.domain, t.dataset, t.env_id) == ("puzzle-3x3", "puzzle-3x3-play", "puzzle-3x3-singletask-task4-v0")
    with pytest.raises(ValueError, match="task<1..5>"):
        Task.parse("scene-play-task2")
    with pytest.raises(FileNotFoundError, match="tether flow data --env scene-play"):
        t = Task.parse("scene-play-singletask-task2-v0").dataset_file(tmp_path)


def test_buffer_rewards_masks_and_episode_ends(data_dir):
    task = Task.parse("scene-play-singletask-task2-v0")
    dense = load_buffer(task, data_dir, reward="dense", extra_capacity=5)
    sparse = load_buffer(task, data_dir, reward="sparse")
    n = sparse.size
    assert n == 238 and dense.obs.shape[0] == n + 5
    assert set(sparse.rewards[:n].tolist()) <= {-1.0, 0.0}
    assert torch.equal(sparse.rewards[:n] == 0, dense.rewards[:n] == 0)
    assert torch.equal(sparse.terminals[:n], dense.rewards[:n] == 0)  # success = terminal (mask 0)
    assert int(sparse.ends[:n].sum()) == 2  # one episode end per generated episode


def test_dataset_actions_are_clipped_inside_the_bounds_as_the_official_loader_does(data_dir):
    raw = np.load(data_dir / "scene-play-v0.npz")["actions"]
    assert np.abs(raw).max() == 1.0  # the oracles' clipped actions sit on the bound: the clip has work to do
    acts = load_buffer(Task.parse("scene-play-singletask-task2-v0"), data_dir, reward="sparse").actions
    assert oe.ACTION_BOUND == 1 - 1e-5 and float(acts.abs().max()) == pytest.approx(oe.ACTION_BOUND)


def test_parallel_evaluator_runs_every_episode_to_its_time_limit_in_waves():
    task = Task.parse("scene-play-singletask-task2-v0")
    batches = []

    def still(obs):  # standing still never solves task 2
        batches.append(obs.shape[0])
        return torch.zeros(obs.shape[0], 5 * 5)

    with ParallelEvaluator(task, episodes=3, workers=2, max_steps=12, envs_per_worker=1) as ev:
        assert ev.slots == 2
        out = ev(still, 5, 5, seed=0)
    assert out.pop("eval/seconds_per_50") > 0
    assert out == {"eval/success": 0.0, "eval/episode_length": 12.0}
    assert batches == [2, 2, 2, 1, 1, 1]  # two waves (2 + 1 episodes) of ceil(12 / 5) = 3 chunks each


class _OneStepEnv:
    """A stand-in for the MuJoCo env: every episode succeeds at its first step."""

    def reset(self, seed):
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, True, False, {"success": True}


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="patches reach the workers through fork")
def test_evaluator_workers_start_through_worker_init_and_ignore_ctrl_c(tmp_path, monkeypatch, capfd):
    calls, real = tmp_path / "worker_init", oe.worker_init

    def recorded(parent_pid):
        with calls.open("a") as f:
            f.write(f"{parent_pid}\n")
        real(parent_pid)

    monkeypatch.setattr(oe, "worker_init", recorded)
    monkeypatch.setattr(oe, "make_env", lambda task, max_steps: _OneStepEnv())
    with ParallelEvaluator(Task.parse("scene-play-singletask-task1-v0"), episodes=2, workers=2,
                           envs_per_worker=1) as ev:
        for p in ev.procs:  # at once, while they may still start: the SIGINT block covers that
            os.kill(p.pid, signal.SIGINT)
        out = ev(lambda obs: torch.zeros(obs.shape[0], 2), 1, 2, seed=0)
    out.pop("eval/seconds_per_50")
    assert out == {"eval/success": 1.0, "eval/episode_length": 1.0}  # both workers survived Ctrl-C
    assert calls.read_text().split() == [str(os.getpid())] * 2
    assert "KeyboardInterrupt" not in capfd.readouterr().err


def test_generation_workers_start_through_worker_init(monkeypatch):
    started, spawn = {}, mp.get_context("spawn")

    class Spawn:  # the spawn context up to its Pool, which records how the workers would start
        def get_start_method(self):
            return "spawn"

        def Queue(self):
            return spawn.Queue()

        def Pool(self, workers, initializer, initargs):
            started.update(initializer=initializer, initargs=initargs)
            raise RuntimeError("recorded")

    monkeypatch.setattr(od.mp, "get_context", lambda method: Spawn())
    with pytest.raises(RuntimeError, match="recorded"):
        od._run_pool([(SPEC, "train", 0, 1, "unused")], 2, bar=None)
    assert started["initializer"] is od._init_worker and started["initargs"][1] == os.getpid()
    seen = []
    monkeypatch.setattr(od, "worker_init", seen.append)
    monkeypatch.setattr(od, "_EPISODES", None)
    od._init_worker(*started["initargs"])
    assert seen == [os.getpid()] and od._EPISODES is started["initargs"][0]


def test_flow_train_end_to_end_and_bc_cache_shared(data_dir, tmp_path, capsys):
    base = ["flow", "train", "--preset", "smoke", "--data-dir", str(data_dir), "--bc-dir", str(tmp_path / "bc"),
            "--eval-workers", "1", "--max-episode-steps", "5"]
    assert main(base + ["--method", "trqam", "--run.dir", str(tmp_path / "trqam")]) == 0
    out = capsys.readouterr().out.splitlines()  # a short closing summary, not one long JSON line
    assert out[0].startswith("flow train done (trqam on scene-play-singletask-task2-v0, 6 offline + 6 online steps")
    assert out[0].endswith(f": {tmp_path / 'trqam'}") and "after offline" in out[1] and "final" in out[1]
    assert out[2:] == ["next:", f"  tether report {tmp_path / 'trqam'}"]
    summary = json.loads((tmp_path / "trqam" / "summary.json").read_text())
    assert set(summary) == {"success_start", "success_offline", "success_final", "seconds"}
    evals = [json.loads(line) for line in (tmp_path / "trqam" / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals] == [6, 12]  # the offline/online switch and the end
    ckpt = next((tmp_path / "bc").glob("*/state.json"))
    mtime = ckpt.stat().st_mtime_ns
    assert main(base + ["--method", "fql", "--run.dir", str(tmp_path / "fql")]) == 0
    assert ckpt.stat().st_mtime_ns == mtime and len(list((tmp_path / "bc").glob("*/state.json"))) == 1
    rows = [json.loads(line) for line in (tmp_path / "fql" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 12 and any("rollout/return" in r for r in rows)  # online episodes were collected
    keys = {k for r in rows + evals for k in r if k != "step"}
    assert undocumented(keys) == []


def test_flow_train_rejects_bad_input_before_work(tmp_path, capsys):
    assert main(["flow", "train", "--task", "scene-play-v0", "--run.dir", str(tmp_path / "x")]) == 2
    assert "singletask-task<1..5>" in capsys.readouterr().err
    assert main(["flow", "train", "--method", "sac"]) == 2
    assert "sac" in capsys.readouterr().err
    assert main(["flow", "train", "--data-dir", str(tmp_path), "--run.dir", str(tmp_path / "y")]) == 2
    assert "tether flow data --env scene-play" in capsys.readouterr().err
    assert main(["flow", "data", "--env", "antmaze-large-navigate"]) == 2
    assert "experts" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_flow_train_on_cuda_without_a_gpu_is_one_line_before_any_work(data_dir, tmp_path, capsys):
    args = ["flow", "train", "--preset", "smoke", "--data-dir", str(data_dir), "--bc-dir", str(tmp_path / "bc"),
            "--run.dir", str(tmp_path / "run")]
    assert main(args + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda: CUDA is not available" in err[0], err
    assert not (tmp_path / "run").exists() and not (tmp_path / "bc").exists()
    assert main(args + ["--device", "gpu"]) == 2
    assert "'device': got 'gpu'" in capsys.readouterr().err


def test_a_corrupted_dataset_file_is_one_clear_error(tmp_path):
    from tether.core.config import ConfigError

    (tmp_path / "scene-play-v0.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "scene-play-v0-val.npz").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot be read .*regenerate it with `tether flow data --env scene-play"):
        load_buffer(Task.parse("scene-play-singletask-task2-v0"), tmp_path, reward="sparse")


LEAN_WORKERS = r"""
import json, sys, time
import torch
from tether.flow.ogbench.env import ParallelEvaluator, Task

def mem(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            out["rss_mb"] = int(line.split()[1]) / 1024
    for line in open(f"/proc/{pid}/smaps_rollup"):
        k, *v = line.split()
        if k in ("Pss:", "Private_Clean:", "Private_Dirty:"):
            out[k.rstrip(":").lower() + "_mb"] = int(v[0]) / 1024
    return out

ev = ParallelEvaluator(Task.parse("scene-play-singletask-task2-v0"), episodes=4, workers=2, max_steps=5)
start = time.perf_counter()
ev(lambda obs: torch.zeros(obs.shape[0], 25), 5, 5, seed=0)  # every worker has built its env copies
print(json.dumps({"pids": ev.worker_pids(), "mem": [mem(p) for p in ev.worker_pids()],
                  "slots": ev.slots, "seconds": time.perf_counter() - start}), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_scene_eval_workers_stay_under_1gb_and_die_when_the_trainer_is_killed():
    """Default evaluator (2 copies per worker): each scene worker < 1 GB resident; `kill -9` of the process that
    owns the evaluator leaves no worker alive (printed: RSS, PSS and private MB per worker)."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", LEAN_WORKERS], stdout=subprocess.PIPE, text=True)
    try:
        report = json.loads(proc.stdout.readline())
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup in the parent
        proc.wait()
    print(json.dumps(report))
    assert report["slots"] == 4 and len(report["pids"]) == 2
    assert all(m["rss_mb"] < 1024 for m in report["mem"]), report
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in report["pids"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in report["pids"]), "evaluation workers outlived the killed trainer"
