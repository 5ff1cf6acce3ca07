"""The fine-tuning methods of a pretrained flow policy by name: the one registry `tether flow train` (OGBench)
and `tether flow toy` build their agents from.

A method's hyper-parameters live in its own config (`FQLConfig`, `QAMConfig`, `TRQAMConfig`, each default
declared there once); a caller's config nests the three as sections `fql`, `qam` and `trqam` and overrides
only what its setting needs (the toy's frozen reference, OGBench's scene temperature).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal, Protocol

from tether.core.registry import Registry
from tether.flow.agent import AgentConfig, BCAgent, FixedCritic, FlowAgent, Reference
from tether.flow.fql import FQLAgent, FQLConfig
from tether.flow.qam import QAMAgent, QAMConfig
from tether.flow.trqam import TRQAMAgent, TRQAMConfig

__all__ = ["Method", "METHODS", "MethodSections", "build_agent", "METHOD_ALIASES", "with_hparams"]

Method = Literal["bc", "fql", "qam", "trqam"]
"""bc (the pretrained flow, BC continued), fql, qam or trqam."""

METHOD_ALIASES = {"alpha": "fql.alpha", "beta": "qam.beta", "kl_budget": "trqam.kl_budget",
                  "lam_scale": "trqam.lam_scale", "eta": "trqam.eta", "log_dual": "trqam.log_dual"}
"""The flat flags of the configs before the sections were nested (`--beta` = `--qam.beta`); still accepted."""


class MethodSections(Protocol):
    fql: FQLConfig
    qam: QAMConfig
    trqam: TRQAMConfig


Builder = Callable[..., FlowAgent]
METHODS: Registry[Builder] = Registry("method")


@METHODS.register("bc")
def _bc(hp: MethodSections, agent: AgentConfig, obs_dim: int, act_dim: int, *, seed: int,
        fixed_critic: FixedCritic | None, bc_reference: Reference, device: str) -> FlowAgent:
    return BCAgent(agent, obs_dim, act_dim, seed=seed, reference=bc_reference, device=device)


@METHODS.register("fql")
def _fql(hp: MethodSections, agent: AgentConfig, obs_dim: int, act_dim: int, *, seed: int,
         fixed_critic: FixedCritic | None, bc_reference: Reference, device: str) -> FlowAgent:
    return FQLAgent(hp.fql, obs_dim, act_dim, agent=agent, seed=seed, fixed_critic=fixed_critic, device=device)


@METHODS.register("qam")
def _qam(hp: MethodSections, agent: AgentConfig, obs_dim: int, act_dim: int, *, seed: int,
         fixed_critic: FixedCritic | None, bc_reference: Reference, device: str) -> FlowAgent:
    return QAMAgent(hp.qam, obs_dim, act_dim, agent=agent, seed=seed, fixed_critic=fixed_critic, device=device)


@METHODS.register("trqam")
def _trqam(hp: MethodSections, agent: AgentConfig, obs_dim: int, act_dim: int, *, seed: int,
           fixed_critic: FixedCritic | None, bc_reference: Reference, device: str) -> FlowAgent:
    return TRQAMAgent(hp.trqam, obs_dim, act_dim, agent=agent, seed=seed, fixed_critic=fixed_critic, device=device)


def build_agent(method: str, hp: MethodSections, agent: AgentConfig, obs_dim: int, act_dim: int, *, seed: int = 0,
                fixed_critic: FixedCritic | None = None, bc_reference: Reference = "ema",
                device: str = "cpu") -> FlowAgent:
    """The agent of `method` with the hyper-parameters of its section of `hp` and the networks of `agent`, on
    `device` ('cpu', 'cuda', 'cuda:N', 'auto')."""
    return METHODS.get(method)(hp, agent, obs_dim, act_dim, seed=seed, fixed_critic=fixed_critic,
                               bc_reference=bc_reference, device=device)


def with_hparams(cfg: Any, **flat: Any) -> Any:
    """`cfg` (a config with `fql`/`qam`/`trqam` sections) with method hyper-parameters set by their flat names
    (`beta=10`, `kl_budget=0.5`, ...; `METHOD_ALIASES`) and any other field set as `dataclasses.replace` would."""
    sections: dict[str, dict[str, Any]] = {}
    plain = {}
    for name, value in flat.items():
        if name in METHOD_ALIASES:
            section, leaf = METHOD_ALIASES[name].split(".")
            sections.setdefault(section, {})[leaf] = value
        else:
            plain[name] = value
    nested = {s: replace(getattr(cfg, s), **kw) for s, kw in sections.items()}
    return replace(cfg, **nested, **plain)
