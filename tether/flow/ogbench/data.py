"""Local OGBench manipulation datasets, generated with the scripted "play" oracles that ship in the wheel.

OGBench downloads its datasets at run time (`ogbench.utils.DATASET_URL`), which cannot work offline. The
oracles (`ogbench.manipspace.oracles.plan.*`) are in the wheel, the driver script is not; this is our own
driver following the published protocol (OGBench arXiv:2410.20092 App. D; docs/results/trqam.md section 6.1):

* env `<domain>-v0` made with `terminate_at_goal=False, mode="data_collection", max_episode_steps=1001`;
* the oracle is picked by `info["privileged/target_task"]`; when it is done, `set_new_target(p_stack=...)`
  (p_stack ~ U(0, .25) double, U(.05, .35) triple, U(.1, .5) quadruple, 0 single, 0.5 otherwise);
* plan-oracle noise 0.1, smoothing 0.5; puzzle presses with the gripper always closed;
* scene episodes whose cube leaves the visible table are regenerated (OGBench's health check);
* fields `observations, actions, terminals (episode end), qpos, qvel[, button_states]` from `info["prev_*"]`,
  train file `<domain>-play-v0.npz` and val file `...-val.npz` (episodes // 10), the layout
  `ogbench.utils.load_dataset` reads.

The data are statistically equivalent to the official files, not bitwise equal (different RNG streams).
Navigation datasets (antmaze, humanoidmaze) need OGBench's pretrained SAC experts, which are internet-only:
not supported here. Generation is sharded (`episodes_per_shard` episodes per file, one seed per shard), so
it runs in parallel processes, resumes after an interruption and gives the same bytes for any worker count.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing as mp
import os
import queue
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tether.core.config import check
from tether.core.progress import progress
from tether.core.rundir import write_json_atomic
from tether.core.seeding import derive_seed
from tether.core.signals import sigint_blocked, worker_init

DOMAINS = ("cube-single", "cube-double", "cube-triple", "cube-quadruple", "scene", "puzzle-3x3", "puzzle-4x4",
           "puzzle-4x5", "puzzle-4x6")
"""Manipulation domains whose "play" data the shipped oracles can generate."""
NAVIGATION = ("antmaze", "humanoidmaze", "pointmaze", "antsoccer")


@dataclass(frozen=True)
class DataSpec:
    """What a generated dataset is; written to the manifest and compared on resume."""

    env: str
    """Dataset name without version, e.g. `scene-play`."""
    episodes: int
    """Training episodes (the val file gets episodes // 10 more)."""
    seed: int
    """Master seed; shard i of split s uses derive_seed(seed, f"{s}-{i}")."""
    episodes_per_shard: int
    """Episodes per shard file (the unit of parallel work and of resume)."""
    episode_steps: int = 1001
    """Steps per episode (OGBench: 1001; shorter only for tests)."""

    @property
    def domain(self) -> str:
        return self.env.rsplit("-", 1)[0]

    def shards(self) -> list[tuple[str, int, int]]:
        """(split, index, n_episodes) for every shard, train first."""
        out = []
        for split, total in (("train", self.episodes), ("val", max(self.episodes // 10, 1))):
            for i, start in enumerate(range(0, total, self.episodes_per_shard)):
                out.append((split, i, min(self.episodes_per_shard, total - start)))
        return out


def validate_env(env: str) -> None:
    """Raise naming the bad dataset name and what is supported."""
    domain, _, kind = env.rpartition("-")
    if any(env.startswith(n) for n in NAVIGATION):
        raise ValueError(f"env {env!r}: navigation datasets need OGBench's pretrained SAC experts (internet-only); "
                         f"only manipulation 'play' data can be generated here: {[d + '-play' for d in DOMAINS]}")
    if kind != "play" or domain not in DOMAINS:
        raise ValueError(f"env {env!r}: expected '<domain>-play' with domain in {list(DOMAINS)}")


def quiet_mujoco() -> None:
    """Headless MuJoCo (no GLFW/DISPLAY warning) and no gymnasium warning about its Box dtype casts."""
    os.environ.setdefault("MUJOCO_GL", "disable")
    warnings.filterwarnings("ignore", message=".*precision lowered.*")


def _oracles(env, domain: str) -> dict:
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    kw = {"env": env, "noise": 0.1, "noise_smoothing": 0.5}
    if domain.startswith("cube"):
        return {"cube": CubePlanOracle(**kw)}
    if domain == "scene":
        return {"cube": CubePlanOracle(**kw), "button": ButtonPlanOracle(**kw), "drawer": DrawerPlanOracle(**kw),
                "window": WindowPlanOracle(**kw)}
    return {"button": ButtonPlanOracle(gripper_always_closed=True, **kw)}


def _p_stack(domain: str) -> float:
    lo_hi = {"cube-single": (0.0, 0.0), "cube-double": (0.0, 0.25), "cube-triple": (0.05, 0.35),
             "cube-quadruple": (0.1, 0.5)}.get(domain)
    return 0.5 if lo_hi is None else float(np.random.uniform(*lo_hi))


def _scene_healthy(qpos: np.ndarray) -> bool:
    """OGBench's check: the cube never leaves the table to the right, nor to the left unless in the drawer."""
    xyz = qpos[:, 14:17]
    right = (xyz[:, 1] >= 0.29).any()
    left = ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()
    return not (right or left)


def _episode(env, agents: dict, domain: str) -> dict[str, list]:
    ob, info = env.reset()
    p_stack = _p_stack(domain)
    agent = agents[info["privileged/target_task"]]
    agent.reset(ob, info)
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel", "button_states")}
    done = False
    while not done:
        action = np.clip(np.asarray(agent.select_action(ob, info)), -1, 1)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if agent.done:
            agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
            agent = agents[agent_info["privileged/target_task"]]
            agent.reset(agent_ob, agent_info)
        for k, v in (("observations", ob), ("actions", action), ("terminals", done), ("qpos", info["prev_qpos"]),
                     ("qvel", info["prev_qvel"])):
            rows[k].append(v)
        if "prev_button_states" in info:
            rows["button_states"].append(info["prev_button_states"])
        ob = next_ob
    return rows


DTYPES = {"terminals": bool, "button_states": np.int64}


def generate_shard(spec: DataSpec, split: str, index: int, n_episodes: int, path: Path,
                   on_episode: Callable[[], None] | None = None) -> Path:
    """Generate one shard file atomically (tmp + rename); deterministic in (spec.seed, split, index).
    `on_episode` is called after each kept episode (progress: a shard of 10 scene episodes takes a minute)."""
    quiet_mujoco()
    import gymnasium
    import ogbench.manipspace  # noqa: F401  (registers the envs)

    seed = derive_seed(spec.seed, f"{split}-{index}")
    np.random.seed(seed % 2**32)  # the oracles draw from numpy's global RNG
    env = gymnasium.make(f"{spec.domain}-v0", terminate_at_goal=False, mode="data_collection",
                         max_episode_steps=spec.episode_steps)
    env.reset(seed=seed % 2**32)
    agents = _oracles(env, spec.domain)
    data: dict[str, list] = {}
    done = 0
    while done < n_episodes:
        rows = _episode(env, agents, spec.domain)
        if spec.domain == "scene" and not _scene_healthy(np.asarray(rows["qpos"])):
            continue  # regenerate, as OGBench does
        for k, v in rows.items():
            data.setdefault(k, []).extend(v)
        done += 1
        if on_episode is not None:
            on_episode()
    arrays = {k: np.asarray(v, dtype=DTYPES.get(k, np.float32)) for k, v in data.items() if v}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


_EPISODES = None
"""In a pool worker: the queue that carries one item per finished episode to the parent's progress bar."""


def _init_worker(episodes, parent_pid: int) -> None:
    global _EPISODES
    worker_init(parent_pid)  # Ctrl-C is the parent's to handle; die with the parent, even on kill -9
    _EPISODES = episodes


def _work(args: tuple, on_episode: Callable[[], None] | None = None) -> int:
    spec, split, index, n, path = args
    import torch

    torch.set_num_threads(1)
    if on_episode is None and _EPISODES is not None:
        on_episode = functools.partial(_EPISODES.put, 1)
    generate_shard(spec, split, index, n, Path(path), on_episode)
    return n


def _run_pool(todo: list[tuple], workers: int, bar) -> None:
    """The shards on `workers` spawned processes; the bar advances per episode, as the workers report them."""
    ctx = mp.get_context("spawn")
    episodes = ctx.Queue()
    expected, got = sum(j[3] for j in todo), 0
    with sigint_blocked(ctx):
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(episodes, os.getpid()))
    with pool:
        result = pool.map_async(_work, todo)
        while got < expected:
            try:
                episodes.get(timeout=1.0)
            except queue.Empty:
                if result.ready() and not result.successful():
                    result.get()  # re-raises the worker's error
                continue
            got += 1
            bar.update(1)
        result.get()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_names(env: str) -> tuple[str, str]:
    return f"{env}-v0.npz", f"{env}-v0-val.npz"


def _merge(shard_paths: list[Path], out: Path) -> None:
    parts = [np.load(p) for p in shard_paths]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0].files}
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)


def _check_resume(spec: DataSpec, out: Path) -> None:
    for name in ("manifest.json", ".shards/spec.json"):
        p = out / name
        if p.exists():
            old = json.loads(p.read_text())
            old = old.get("spec", old)
            if old != asdict(spec):
                diff = {k: (old.get(k), v) for k, v in asdict(spec).items() if old.get(k) != v}
                raise ValueError(f"{out} holds a different dataset ({name}): (existing, requested) = {diff}; "
                                 "use another --out or delete it")


def generate(spec: DataSpec, out: str | Path, *, workers: int = 1) -> dict:
    """Generate (or finish) the dataset in `out`; returns the manifest. Existing complete shards are kept."""
    validate_env(spec.env)
    check(spec.episodes >= 1, "episodes", spec.episodes, ">= 1")
    check(spec.episodes_per_shard >= 1, "episodes_per_shard", spec.episodes_per_shard, ">= 1")
    check(workers >= 1, "workers", workers, ">= 1")
    out = Path(out)
    _check_resume(spec, out)
    if (out / "manifest.json").exists():
        return json.loads((out / "manifest.json").read_text())
    shard_dir = out / ".shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    (shard_dir / "spec.json").write_text(json.dumps(asdict(spec)))
    jobs = [(spec, s, i, n, str(shard_dir / f"{s}-{i:05d}.npz")) for s, i, n in spec.shards()]
    todo = [j for j in jobs if not Path(j[4]).exists()]
    total = sum(n for _, _, n in spec.shards())
    kept = total - sum(j[3] for j in todo)
    resumed = f" ({kept} done by an earlier run)" if kept else ""
    print(f"{spec.env}: generating {total - kept} episodes of {spec.episode_steps} steps{resumed} into {out} with "
          f"{workers} worker(s)", file=sys.stderr, flush=True)  # a first line before the first episode ends
    with progress(total, f"{spec.env} episodes", initial=kept) as bar:
        if workers == 1:
            for j in todo:
                _work(j, on_episode=bar.update)
        else:
            _run_pool(todo, workers, bar)
    return _finish(spec, out, jobs)


def _finish(spec: DataSpec, out: Path, jobs: list[tuple]) -> dict:
    from importlib.metadata import version

    names = dict(zip(("train", "val"), file_names(spec.env), strict=True))
    files = {}
    for split, name in names.items():
        _merge([Path(j[4]) for j in jobs if j[1] == split], out / name)
        files[name] = {"sha256": sha256(out / name), "transitions": int(len(np.load(out / name)["terminals"]))}
    manifest = {"spec": asdict(spec), "files": files, "ogbench_version": version("ogbench"),
                "generator": "tether.flow.ogbench.data (plan oracles, noise 0.1, smoothing 0.5)"}
    write_json_atomic(out / "manifest.json", manifest)
    for j in jobs:
        Path(j[4]).unlink()
    (out / ".shards" / "spec.json").unlink()
    (out / ".shards").rmdir()
    return manifest


def verify(out: str | Path) -> None:
    """Raise if a file's checksum differs from the manifest (a truncated copy, or an edited file)."""
    out = Path(out)
    manifest = json.loads((out / "manifest.json").read_text())
    for name, meta in manifest["files"].items():
        if sha256(out / name) != meta["sha256"]:
            raise ValueError(f"{out / name}: sha256 differs from manifest.json; regenerate or re-copy it")
