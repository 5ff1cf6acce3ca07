"""`tether flow train`: the TRQAM pipeline on one OGBench task (arXiv:2605.27079; docs/results/trqam.md section 6).

1. BC pretraining of the flow on the task's dataset, cached in `bc_dir` per (dataset, seed, network, steps):
   every method of a sweep loads the same checkpoint into its slow/reference and fine-tuned flows.
2. Offline fine-tuning with the chosen method (bc = keep training the BC flow; fql; qam; trqam).
3. The online phase: env interaction with the policy's open-loop chunks, the replay buffer initialised with
   the dataset, uniform sampling, the same update (UTD 1).
Evaluations (50 episodes, parallel env copies) at step 0, every `eval_every`, at the offline/online switch
and at the end; `summary.json` reports offline and offline-to-online success separately.
"""

from __future__ import annotations

import fcntl
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from tether.core.checkpoint import STATE_FILE, load_checkpoint, save_checkpoint
from tether.core.config import check
from tether.core.extras import require
from tether.core.progress import print_summary, progress
from tether.core.rundir import RunConfig, RunDir, read_jsonl, write_json_atomic
from tether.core.seeding import generator
from tether.flow.agent import AgentConfig, BCAgent
from tether.flow.data import ReplayBuffer
from tether.flow.device import check_device_name, resolve_device
from tether.flow.fql import FQLConfig
from tether.flow.methods import METHODS, Method, build_agent
from tether.flow.ogbench.data import sha256
from tether.flow.ogbench.env import OGBenchEnv, ParallelEvaluator, Reward, Task, load_buffer
from tether.flow.qam import QAMConfig
from tether.flow.train import TrainConfig, fit
from tether.flow.trqam import TRQAMConfig


@dataclass(frozen=True)
class OGBenchConfig:
    """`tether flow train`: BC pretraining (cached), offline fine-tuning and online RL on one OGBench task."""

    task: str = "scene-play-singletask-task2-v0"
    """OGBench single-task name '<domain>-<dataset>-singletask-task<1..5>-v0'."""
    method: Method = "trqam"
    """bc (the pretrained flow, BC continued), fql, qam or trqam (`tether.flow.methods`)."""
    data_dir: str = "data/ogbench"
    """Directory holding '<domain>-<dataset>-v0.npz' and '-val.npz' (from `tether flow data` or OGBench)."""
    reward: Reward = "sparse"
    """'sparse' = -1[not all subtasks done] (QAM's choice for scene/puzzle); 'dense' = OGBench's subtask count."""
    fql: FQLConfig = field(default_factory=FQLConfig)
    """FQL's hyper-parameters (`--alpha` = `--fql.alpha`; its default 300 is the paper's scene/cube/puzzle value)."""
    qam: QAMConfig = field(default_factory=lambda: QAMConfig(beta=1.0))
    """QAM's hyper-parameters (`--beta` = `--qam.beta`; beta 1 here: the paper's scene and cube-double value)."""
    trqam: TRQAMConfig = field(default_factory=TRQAMConfig)
    """TRQAM's hyper-parameters (`--kl-budget`, `--lam-scale`; the defaults are the paper's)."""
    bc_steps: int = 300_000
    """BC pretraining updates (paper 300K); 0 = start from a randomly initialised flow."""
    bc_dir: str = "runs/bc"
    """Cache of BC checkpoints shared by every method and run (keyed by dataset, seed, network, steps)."""
    agent: AgentConfig = field(default_factory=AgentConfig)
    """Networks and optimisation (paper: 4x512, N_Q = 10, K = 10, H = 5)."""
    schedule: TrainConfig = field(default_factory=lambda: TrainConfig(
        offline_steps=1_000_000, online_steps=500_000, batch_size=256, start_training=5_000, eval_every=50_000,
        eval_episodes=50))
    """Offline/online steps, batch, online warm-up, evaluation cadence (paper: 1M + 500K, online updates from the
    5,000th env step, eval every 50K with 50 episodes)."""
    eval_workers: int = 2
    """Processes stepping the evaluation env copies."""
    eval_envs: int = 2
    """Env copies per evaluation process (episodes run in waves; a scene env holds ~175 MB, so a scene worker with
    2 copies stays under 1 GB resident)."""
    max_episode_steps: int = 0
    """Episode time limit of the evaluation and online envs; 0 = OGBench's (scene 750, puzzle/cube-double 500)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Run directory, seed, logging and checkpoint cadence."""
    device: str = "cpu"
    """Where the agent, its replay buffer and every update run: 'cpu', 'cuda', 'cuda:N' or 'auto' (cuda when a GPU
    is visible, else cpu). A resumed run must use the device it started on."""

    def __post_init__(self) -> None:
        check_device_name(self.device)
        Task.parse(self.task)  # raises naming the bad task name
        require("ogbench", "mujoco", "gymnasium", purpose="tether flow train (OGBench's environments)")
        check(self.method in METHODS, "method", self.method, METHODS.names())
        check(self.reward in ("sparse", "dense"), "reward", self.reward, "'sparse' or 'dense'")
        check(self.bc_steps >= 0, "bc_steps", self.bc_steps, ">= 0")
        check(self.eval_workers >= 1 and self.eval_envs >= 1, "eval_workers/eval_envs",
              (self.eval_workers, self.eval_envs), ">= 1")
        check(self.max_episode_steps >= 0, "max_episode_steps", self.max_episode_steps, ">= 0")


def dataset_digest(path: Path) -> str:
    """sha256 of the dataset file (from its manifest when `tether flow data` wrote one)."""
    manifest = path.parent / "manifest.json"
    if manifest.exists():
        files = json.loads(manifest.read_text()).get("files", {})
        if path.name in files:
            return files[path.name]["sha256"]
    return sha256(path)


def bc_key(cfg: OGBenchConfig, digest: str) -> str:
    a = cfg.agent
    net = f"h{a.horizon}-w{'x'.join(map(str, a.hidden))}-ln{int(a.actor_layer_norm)}-k{a.flow_steps}"
    return (f"{Task.parse(cfg.task).dataset}-{digest[:12]}-{net}-b{cfg.schedule.batch_size}-n{cfg.bc_steps}"
            f"-s{cfg.run.seed}")


def pretrained_bc(cfg: OGBenchConfig, buffer: ReplayBuffer, digest: str) -> dict[str, torch.Tensor]:
    """The cached BC flow for this config, training it first if absent. A file lock makes concurrent runs of
    a sweep wait for one pretraining instead of repeating it; the checkpoint is written atomically."""
    path = Path(cfg.bc_dir) / bc_key(cfg, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / STATE_FILE).exists():
            agent = BCAgent(cfg.agent, buffer.obs.shape[1], buffer.actions.shape[1], seed=cfg.run.seed,
                            device=buffer.device)
            gen = generator(cfg.run.seed, "bc")
            start, losses = time.perf_counter(), []
            with progress(cfg.bc_steps, "BC pretraining") as bar:
                for _ in range(cfg.bc_steps):
                    m = agent.update(buffer.sample(cfg.schedule.batch_size, cfg.agent.horizon, agent.cfg.discount, gen))
                    losses.append(m["loss/bc"])
                    bar.update(1)
            tail = float(torch.stack(losses[-100:]).mean()) if losses else float("nan")
            save_checkpoint(path, {"velocity": agent.slow.state_dict()},
                            meta={"key": path.name, "bc_loss_last100": tail, "seconds": time.perf_counter() - start})
    return load_checkpoint(path)["velocity"]


def summarize(run: RunDir, offline_steps: int, seconds: float) -> dict:
    """Offline success (eval at the switch) and offline-to-online success (last eval), written to summary.json."""
    rows = read_jsonl(run.path / "eval.jsonl")
    at = {r["step"]: r.get("eval/success") for r in rows}
    out = {"success_start": at.get(0), "success_offline": at.get(offline_steps),
           "success_final": rows[-1].get("eval/success") if rows else None, "seconds": round(seconds, 1)}
    write_json_atomic(run.path / "summary.json", out)
    return out


def run_train(cfg: OGBenchConfig) -> int:
    device = resolve_device(cfg.device)  # `--device cuda` without a GPU: one line, before any work or file
    task = Task.parse(cfg.task)
    data_file = task.dataset_file(cfg.data_dir)  # clear error before any work
    start = time.perf_counter()
    s = cfg.schedule
    eval_seed = 10_000 + cfg.run.seed
    # the evaluation workers fork first, from a process without the dataset or the agent (lean workers); the
    # dataset loads (and a corrupt file is refused) before the run directory is touched
    with ParallelEvaluator(task, episodes=s.eval_episodes, workers=cfg.eval_workers, max_steps=cfg.max_episode_steps,
                           envs_per_worker=cfg.eval_envs) as ev:
        buffer = load_buffer(task, cfg.data_dir, reward=cfg.reward, extra_capacity=s.online_steps, device=device)
        run = RunDir.from_config(cfg.run, cfg, default_dir=f"runs/flow/{task.name}/{cfg.method}-s{cfg.run.seed}")
        agent = build_agent(cfg.method, cfg, cfg.agent, buffer.obs.shape[1], buffer.actions.shape[1],
                            seed=cfg.run.seed, device=device)
        if cfg.bc_steps and not cfg.run.resume:
            agent.load_pretrained(pretrained_bc(cfg, buffer, dataset_digest(data_file)))
        with progress(s.offline_steps + s.online_steps, f"{cfg.method} {task.name}") as bar:
            done = [0]

            def on_step(step: int, m: dict[str, float]) -> None:
                shown = {k.replace("/", "_"): v for k, v in m.items()
                         if k in ("loss/critic", "q/mean", "kl/path", "eval/success")}
                bar.update(step - done[0], **shown)
                done[0] = step

            fit(agent, buffer, s, run, cfg.run, env_fn=lambda: OGBenchEnv(task, cfg.reward, cfg.max_episode_steps),
                evaluator=lambda a: ev(a.act, a.cfg.horizon, a.act_dim, seed=eval_seed), on_step=on_step)
    out = summarize(run, s.offline_steps, time.perf_counter() - start)
    run.close()
    # a few lines for a person; the same numbers, machine-readable, are in summary.json
    print_summary(f"flow train done ({cfg.method} on {task.name}, {s.offline_steps} offline + {s.online_steps} "
                  f"online steps, {out['seconds']:.0f} s)", run.path,
                  {"success at start": out["success_start"], "after offline": out["success_offline"],
                   "final": out["success_final"]}, tensorboard=cfg.run.tensorboard)
    return 0


def preset_cpu_small() -> OGBenchConfig:
    """The scale of our first CPU reproduction (docs/results/trqam.md): 4x128 nets, N_Q = 2, batch 128, 20K BC +
    10K offline + 2K online steps (online updates from the first env step), 50-episode evaluations at the
    offline/online switch and at the end."""
    w = (128, 128, 128, 128)
    return OGBenchConfig(agent=AgentConfig(hidden=w, critic_hidden=w, num_qs=2), bc_steps=20_000,
                         schedule=TrainConfig(offline_steps=10_000, online_steps=2_000, batch_size=128,
                                              eval_every=0, eval_episodes=50),
                         run=RunConfig(log_every=100, save_every=5_000))


def preset_cpu_scene() -> OGBenchConfig:
    """The scale of the scene comparison in docs/results/trqam.md on a 2-core CPU: 4x256 nets, N_Q = 2 (the QAM
    paper's N_Q ablation), batch 256, from scratch (no BC pretraining, as the official QAM numbers), 50K offline
    updates with 50-episode evaluations every 10K; add online steps with `--schedule.online-steps` (updates
    start at the 5,000th env step, as the official code). `--agent.bf16 true` halves the update cost on CPUs
    with native bf16 (AVX512-BF16/AMX) and multiplies it on AVX2-only ones."""
    w = (256, 256, 256, 256)
    return OGBenchConfig(agent=AgentConfig(hidden=w, critic_hidden=w, num_qs=2), bc_steps=0, eval_workers=1,
                         schedule=TrainConfig(offline_steps=50_000, online_steps=0, batch_size=256,
                                              start_training=5_000, eval_every=10_000, eval_episodes=50),
                         run=RunConfig(log_every=100, save_every=5_000))


def preset_smoke() -> OGBenchConfig:
    """Seconds-long end-to-end check (tests, `make demo`-sized)."""
    w = (32, 32)
    base = preset_cpu_small()
    return replace(base, agent=AgentConfig(hidden=w, critic_hidden=w, num_qs=2, flow_steps=4), bc_steps=20,
                   schedule=TrainConfig(offline_steps=6, online_steps=6, batch_size=16, eval_every=0, eval_episodes=2),
                   max_episode_steps=50, run=RunConfig(log_every=2))


PRESETS = {"paper": OGBenchConfig, "cpu-small": preset_cpu_small, "cpu-scene": preset_cpu_scene,
           "smoke": preset_smoke}
