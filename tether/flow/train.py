"""The one training loop every flow agent shares: offline updates, then an online phase with a replay buffer.

Owns the step counter, the replay-buffer RNG, metrics flushing, evaluation, checkpoints and resume. The
agent owns its networks, optimiser and duals (`FlowAgent.update`, `training_state`). The loop is env-
agnostic: an env has gymnasium-style `reset()` / `step(action)` on torch tensors (OGBench adapters are a
later issue). Online (UTD 1, as in QAM/TRQAM): the policy's action chunk is executed open-loop, each env
step is appended to the buffer (dataset + online data, sampled uniformly) and followed by one update.

Resume is exact in both phases: the partial sums of the metrics row in progress are in the checkpoint (a row
that spans a checkpoint gets the uninterrupted mean), and online checkpoints are taken at episode boundaries (a
save that falls due mid-episode, or a SIGTERM/SIGINT, waits for the episode to end), so a resumed run resets the
env with the same seed an uninterrupted run would use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from tether.core.checkpoint import load_latest, rng_state, save_checkpoint, set_rng_state
from tether.core.config import ConfigError, check
from tether.core.metrics import Metrics
from tether.core.rundir import RunConfig, RunDir
from tether.core.seeding import generator
from tether.core.signals import StopRequested, graceful_stop
from tether.core.timing import Timer
from tether.flow.agent import FlowAgent
from tether.flow.data import ReplayBuffer


class Env(Protocol):
    def reset(self, *, seed: int | None = None) -> tuple[Tensor, dict]: ...

    def step(self, action: Tensor) -> tuple[Tensor, float, bool, bool, dict]: ...


@dataclass(frozen=True)
class TrainConfig:
    """Schedule of one run (offline then online)."""

    offline_steps: int = 1000
    """Gradient updates on the offline dataset."""
    online_steps: int = 0
    """Env steps of the online phase, one update after each (UTD 1) from `start_training` on."""
    batch_size: int = 256
    """Chunks per update."""
    start_training: int = 0
    """Online env step at which the online updates start (the official OGBench code: 5,000); the env steps
    before it are collected and counted as steps but update nothing. 0 or 1 = update from the first online step."""
    eval_every: int = 0
    """Updates between evaluations (0 = only at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation (needs an env)."""

    def __post_init__(self) -> None:
        check(self.offline_steps >= 0 and self.online_steps >= 0, "offline_steps/online_steps",
              (self.offline_steps, self.online_steps), ">= 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(self.start_training >= 0, "start_training", self.start_training, ">= 0")
        check(self.eval_every >= 0 and self.eval_episodes >= 0, "eval_every/eval_episodes",
              (self.eval_every, self.eval_episodes), ">= 0")


@torch.no_grad()
def evaluate(agent: FlowAgent, env: Env, episodes: int, *, seed: int) -> dict[str, float]:
    """Mean return and success over `episodes` episodes, chunks executed open-loop."""
    returns, successes = [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, done, info = 0.0, False, {}
        while not done:
            chunk = agent.act(obs[None])[0].cpu().view(agent.cfg.horizon, agent.act_dim)  # the env steps on the host
            for a in chunk:
                obs, r, term, trunc, info = env.step(a)
                total, done = total + r, term or trunc
                if done:
                    break
        returns.append(total)
        successes.append(float(info.get("success", False)))
    return {"eval/return": sum(returns) / max(episodes, 1), "eval/success": sum(successes) / max(episodes, 1)}


class OnlineCollector:
    """Steps an env with the agent's open-loop chunks and appends each transition to the buffer."""

    def __init__(self, env: Env, seed: int):
        self.env, self.seed, self.episode = env, seed, 0
        self.obs, self.queue, self.ret = None, [], 0.0

    def step(self, agent: FlowAgent, buffer: ReplayBuffer) -> dict[str, float]:
        if self.obs is None:
            self.obs, _ = self.env.reset(seed=self.seed + 10_000 + self.episode)
        if not self.queue:
            self.queue = list(agent.act(self.obs[None])[0].cpu().view(agent.cfg.horizon, agent.act_dim))
        a = self.queue.pop(0)
        nxt, r, term, trunc, info = self.env.step(a)
        buffer.add(self.obs[None], a[None], torch.tensor([r]), nxt[None], torch.tensor([term]),
                   torch.tensor([term or trunc]))
        self.obs, self.ret = nxt, self.ret + r
        if not (term or trunc):
            return {}
        out = {"rollout/return": self.ret, "rollout/success": float(info.get("success", False))}
        self.obs, self.queue, self.ret, self.episode = None, [], 0.0, self.episode + 1
        return out


def save(run: RunDir, step: int, agent: FlowAgent, buffer: ReplayBuffer, gen: torch.Generator,
         offline_size: int, episode: int = 0, metrics: Metrics | None = None) -> None:
    """A checkpoint of `step`: agent, replay RNG, the online part of the buffer, the online episode counter and
    the unflushed metrics. The weights are checked first: a non-finite one is never written."""
    agent.check_finite()
    online = slice(offline_size, buffer.size)
    state = {"agent": agent.training_state(), "rng": rng_state({"replay": gen}), "step": step, "episode": episode,
             "metrics": (metrics or Metrics()).state_dict(),
             "online": {k: getattr(buffer, k)[online].clone()
                        for k in ("obs", "actions", "rewards", "next_obs", "terminals", "ends")}}
    save_checkpoint(run.checkpoint_path(step), state, meta={"step": step, "buffer_size": buffer.size})


def restore(run: RunDir, agent: FlowAgent, buffer: ReplayBuffer, gen: torch.Generator,
            metrics: Metrics) -> tuple[int, int]:
    """Load the latest checkpoint into agent/buffer/gen/metrics; returns (step, online episode) to continue from."""
    found = load_latest(run.path / "checkpoints")  # a damaged latest one falls back to the previous (warned)
    if found is None:
        raise ConfigError(f"run.resume: no loadable checkpoint under {run.path}; run the same command without "
                          "--run.resume to start it")
    state = found[1]
    agent.load_training_state(state["agent"])
    set_rng_state(state["rng"], {"replay": gen})
    o = state["online"]
    buffer.add(o["obs"], o["actions"], o["rewards"], o["next_obs"], o["terminals"], o["ends"])
    run.truncate_after(state["step"])
    metrics.load_state_dict(state["metrics"])
    return state["step"], state.get("episode", 0)


Evaluator = Callable[[FlowAgent], dict[str, float]]
"""agent -> `eval/*` metrics (e.g. ogbench_env.ParallelEvaluator bound to the agent's act)."""


def fit(agent: FlowAgent, buffer: ReplayBuffer, cfg: TrainConfig, run: RunDir, run_cfg: RunConfig, *,
        env_fn: Callable[[], Env] | None = None, evaluator: Evaluator | None = None,
        on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, float]:
    """Offline updates, then online steps; returns the last flushed metrics (plus the last evaluation).

    Evaluates at step 0 (the pretrained policy, when eval_every > 0), every `eval_every` updates, at the
    switch to online and at the end; `evaluator` defaults to sequential episodes in `env_fn()`.
    `on_step(step, flushed_metrics)` is called after every flush (progress bars).
    """
    if evaluator is None and env_fn is not None:
        evaluator = lambda a: evaluate(a, env_fn(), cfg.eval_episodes, seed=run_cfg.seed + 1)  # noqa: E731
    gen = generator(run_cfg.seed, "replay")
    offline_size = buffer.size
    metrics, timer, last = Metrics(), Timer(), {}
    step, episode = restore(run, agent, buffer, gen, metrics) if run_cfg.resume else (0, 0)
    total = cfg.offline_steps + cfg.online_steps
    if step >= total:
        print(f"the run is already finished at step {step} of {total}: nothing to do", file=sys.stderr, flush=True)
        return {}
    collector = OnlineCollector(env_fn(), run_cfg.seed) if env_fn is not None and cfg.online_steps else None
    if collector is not None:
        collector.episode = episode
    if evaluator is not None and cfg.eval_episodes and cfg.eval_every and step == 0:
        run.log_eval(0, evaluator(agent))
    pending_save = False
    with graceful_stop() as stop:  # SIGTERM/SIGINT: save at the next point a save may be taken, then stop
        while step < total:
            if step >= cfg.offline_steps and collector is not None:
                with timer("rollout"):
                    metrics.log_dict(collector.step(agent, buffer))
            online_step = step - cfg.offline_steps + 1  # 1-based index of this online env step (<= 0 offline)
            warming_up = collector is not None and 0 < online_step < cfg.start_training
            if not warming_up:  # the official loop updates from online step `start_training` on
                with timer("update"):
                    batch = buffer.sample(cfg.batch_size, agent.cfg.horizon, agent.cfg.discount, gen)
                    metrics.log_dict(agent.update(batch))
            step += 1
            mid_episode = collector is not None and collector.obs is not None and step > cfg.offline_steps
            pending_save |= bool(run_cfg.save_every and step % run_cfg.save_every == 0) or stop.requested
            saving = step == total or (pending_save and not mid_episode)
            if step % run_cfg.log_every == 0 or step == total:
                last = {**metrics.flush(), **timer.flush()}
                run.log_metrics(step, last)
                if on_step is not None:
                    on_step(step, last)
            due = (cfg.eval_every and step % cfg.eval_every == 0) or step in (total, cfg.offline_steps)
            if evaluator is not None and cfg.eval_episodes and due:
                with timer("eval"):
                    result = evaluator(agent)
                last.update(result)
                run.log_eval(step, result)
            if saving:
                save(run, step, agent, buffer, gen, offline_size, collector.episode if collector is not None else 0,
                     metrics)
                pending_save = False
                if stop.requested and step < total:
                    raise StopRequested(stop.message(step, run.checkpoint_path(step)), stop.exit_code)
    return last
