"""tether.lm: language-model RL on CPU: tiny reasoning models, a KV-cached rollout engine, GRPO.

Public API (Hugging Face pieces live in `tether.lm.hf` and import transformers lazily):
"""

from tether.lm.grpo import GRPOTrainer, TrainConfig
from tether.lm.model import ModelConfig, TinyLM
from tether.lm.policy import Policy, TinyPolicy
from tether.lm.sampler import PRECISIONS, Rollout, RolloutEngine
from tether.lm.tasks import TASKS, make_task, parse_answer
from tether.lm.tokenizer import CharTokenizer, HFTokenizer

__all__ = ["CharTokenizer", "GRPOTrainer", "HFTokenizer", "ModelConfig", "PRECISIONS", "Policy", "Rollout",
           "RolloutEngine", "TASKS", "TinyLM", "TinyPolicy", "TrainConfig", "make_task", "parse_answer"]
