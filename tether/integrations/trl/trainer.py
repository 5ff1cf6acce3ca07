"""tether's mismatch corrections and logit statistics inside TRL's `GRPOTrainer` (recipes: docs/scale.md).

`TetherGRPOTrainer` overrides four private methods of trl 1.16's `GRPOTrainer`, each a thin wrapper that calls
TRL's own implementation:
  _generate                            keeps the batch's prompt/completion ids and the rollout engine's log-probs
                                       (vLLM's, or a `rollout_func` such as `engine_rollout` below)
  _get_per_token_logps_and_entropies   when it is the no-grad theta_old forward, a forward hook on the backbone
                                       keeps the last hidden states of the completion positions
  _calculate_rewards                   before TRL scores: theta_old log-probs (TRL's forward, or one of ours when TRL
                                       runs none), logit statistics, `mismatch/` metrics, `apply_corrections`
  _generate_and_score_completions      after TRL's advantages: shape them to (B, T) with the corrections and take
                                       DCMDP's dual step on the all-reduced delta-bar
plus `_save_checkpoint` / `_load_optimizer_and_scheduler` (TRL's own precedent for its entropy controller), which
keep the dual state and the tether callbacks' state in `tether_state.pt` inside every TRL checkpoint.

The corrections reach TRL's unchanged `_compute_loss` through the advantages alone: A'_t = w_t keep_t (A + shift_t).
Every TRL loss is positively homogeneous in A per token (PPO-clip: w min(rA, clip(r)A) = min(r wA, clip(r) wA) for
w >= 0; CISPO, SAPO and VESPO are linear in A with a branch on its sign, which w > 0 keeps), so this equals tether's
`weight * keep * loss(A + shift)`, dropped tokens staying in the normaliser as in tether. TRL's own vLLM IS
correction must then be off, or both would apply.

Cost: where TRL already runs a theta_old forward (vLLM with its IS on, `num_iterations > 1`, generation misaligned
with accumulation) we add no model pass: the statistics come from that forward's hidden states plus one no-grad
LM-head projection of the completion positions (`_TILE` at a time). In TRL's default aligned one-iteration setup it
runs none and rewards precede its loss forward, so a correction or a logit reward costs one no-grad forward there.
Not supported (error at construction): DCMDP's `sequence_reward` / `differentiable` variants, tools, environments;
multimodal prompts are untested. `token_to_go` needs whole groups on one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from tether.integrations import require_trl

require_trl()

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR  # noqa: E402
from trl import GRPOTrainer  # noqa: E402
from trl.models.utils import disable_gradient_checkpointing  # noqa: E402
from trl.trainer.utils import maybe_gather_lm_head_ctx, pad  # noqa: E402

from tether.core.duals import DualState  # noqa: E402
from tether.integrations.trl.callbacks import TetherCallback  # noqa: E402
from tether.lm.grpo.corrections import Correction, CorrectionConfig, CorrectionInputs, apply_corrections  # noqa: E402
from tether.lm.model.hf import HFPolicy  # noqa: E402
from tether.lm.model.policy import score_tokens  # noqa: E402
from tether.lm.model.tokenizer import pad_left  # noqa: E402
from tether.lm.rollout.engine import RolloutEngine  # noqa: E402
from tether.lm.rollout.mismatch import mismatch_metrics, token_delta  # noqa: E402

__all__ = ["TetherGRPOTrainer", "TetherBatch", "engine_rollout", "STATE_FILE"]

STATE_FILE = "tether_state.pt"
_TILE = 512  # completion positions per LM-head tile of the statistics pass: bounds the (tile, V) logits
_VARIANTS = ("token_immediate", "token_to_go")


@dataclass
class TetherBatch:
    """What tether computed for one TRL generation batch: local rows, CPU tensors, TRL's row order and width."""

    mask: Tensor                     # (B, T) bool completion tokens
    group_ids: Tensor                # (B,) long global prompt index (G consecutive rows per prompt)
    stats: dict[str, Tensor]         # (B, T) per-token statistics at theta_old, "logp" included
    rollout_logp: Tensor | None = None   # (B, T) engine log-probs (None: no correction asked for them)
    delta: Tensor | None = None          # (B, T) DCMDP cost |p_train - p_inf|
    correction: Correction | None = None


class TetherGRPOTrainer(GRPOTrainer):
    """`trl.GRPOTrainer` plus tether's corrections (`correction=CorrectionConfig(name="dcmdp+tis_token")`), tether
    reward functions with logit needs (`TetherReward`) and checkpointed tether state; every other argument is TRL's."""

    def __init__(self, *args, correction: CorrectionConfig | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.correction = k = correction or CorrectionConfig()
        self.corrects = any(n != "none" for n in k.names)
        needs = [tuple(getattr(f, "needs", ())) for f in self.reward_funcs]
        self.stat_names = tuple(dict.fromkeys(s for n in needs for s in n if s != "logp"))
        self.reward_needs = any(needs)  # some reward reads theta_old statistics (log-probs included)
        self.needs_old = self.corrects or self.reward_needs
        # DCMDP's multiplier (arXiv:2606.08779): one projected dual step per generation batch on the global delta-bar
        self.dcmdp = k.dual() if "dcmdp" in k.names else None
        self.dual_state: DualState | None = self.dcmdp.init_state() if self.dcmdp else None
        self._check_supported()
        for f in self.reward_funcs:
            if hasattr(f, "bind"):
                f.bind(self)
        self.tether_batch: TetherBatch | None = None
        self._rollout: tuple | None = None
        self._await_old = False
        self._captured: tuple[Tensor, Tensor | None] | None = None

    def _check_supported(self) -> None:
        k = self.correction
        if self.corrects and self.use_vllm and self.vllm_importance_sampling_correction:
            raise ValueError(f"correction.name={k.name!r} replaces TRL's vLLM importance sampling: set "
                             "vllm_importance_sampling_correction=False (stack tether's instead, e.g. "
                             "'dcmdp+tis_token')")
        if self.dcmdp is not None and k.variant not in _VARIANTS:
            raise ValueError(f"correction.variant={k.variant!r} is not available inside TRL; allowed: {_VARIANTS} "
                             "(sequence_reward / differentiable need TRL's reward aggregation or loss internals)")
        if self.corrects and not self.use_vllm and getattr(self, "rollout_func", None) is None:
            # TRL's own generate returns no sampling log-probs: fail here, not at the first step
            raise ValueError(f"correction.name={k.name!r} needs the rollout engine's log-probs, and TRL's own "
                             "generation returns none: pass rollout_func=engine_rollout('bf16') (tether's engine) "
                             "or use vLLM (use_vllm=True)")
        if self.needs_old and (self.tools or self.environment_factories is not None):
            raise ValueError("tether corrections and logit rewards do not support TRL tools or environments "
                             f"(tools={self.tools!r})")
        if self.dcmdp is not None and k.variant == "token_to_go" and self.accelerator.num_processes > 1:
            raise ValueError("correction.variant='token_to_go' needs whole groups on one process; allowed on "
                             f"{self.accelerator.num_processes} processes: 'token_immediate'")
        cfg = self._hf_model().config.get_text_config()
        scaled = getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None) not in (None, 1.0)
        if self.stat_names and scaled:
            raise ValueError(f"logit statistics {self.stat_names} assume plain logits; {cfg.model_type} scales or "
                             "soft-caps them (final_logit_softcapping / logit_scale)")

    def _hf_model(self):
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _trl_runs_old(self) -> bool:
        """trl 1.16's own condition for its theta_old forward in `_generate_and_score_completions`."""
        every = self.args.steps_per_generation * self.num_iterations
        return self.args.gradient_accumulation_steps % every != 0 or bool(
            self.use_vllm and self.vllm_importance_sampling_correction)

    # ---- hooks into TRL, in the order TRL calls them ------------------------------------------------------
    def _generate(self, prompts: list):
        out = super()._generate(prompts)
        # training: corrections and statistics; evaluation: the statistics of logit rewards only (no dual step)
        active = self.needs_old if self.model.training else self.reward_needs
        self.tether_batch, self._captured = None, None
        self._rollout = (out[0], out[1], out[4]) if active else None   # prompt ids, completion ids, engine logps
        self._await_old = active and self._trl_runs_old()
        return out

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        if not (self._await_old and model is self.model):
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              *args, **kwargs)
        self._await_old = False  # TRL runs theta_old first, then the reference (the same object under PEFT)
        with self._capture_hidden(logits_to_keep) as hidden:
            out = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                             *args, **kwargs)
        self._captured = (out[0].detach(), torch.cat(hidden) if hidden else None)
        return out

    @contextmanager
    def _capture_hidden(self, logits_to_keep: int) -> Iterator[list[Tensor]]:
        """Forward hook on the backbone: last hidden states (b, T, H) that predict the completion tokens."""
        hidden: list[Tensor] = []
        if not self.stat_names:
            yield hidden
            return
        hf = self._hf_model()
        backbone = getattr(hf, hf.base_model_prefix)
        # positions L-T-1 .. L-2 predict the T completion tokens (TRL's fused head shifts the same way)
        handle = backbone.register_forward_hook(
            lambda mod, args, output: hidden.append(output[0][:, -logits_to_keep - 1:-1].detach()))
        try:
            yield hidden
        finally:
            handle.remove()

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        if self._rollout is not None:  # before TRL scores: the logit rewards read `tether_batch.stats`
            self.tether_batch = self._prepare_batch()
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        b, self._rollout = self.tether_batch, None
        if b is None or b.correction is None:
            return out
        c, adv = b.correction, out["advantages"]
        shaped = (adv.detach().cpu().float()[:, None] + c.adv_shift) * c.weight * c.keep      # (B, T)
        out["advantages"] = shaped.to(adv.device, adv.dtype)
        if self.dcmdp is not None:
            self._dual_step(b)
        return out

    # ---- tether's computations on one generation batch -----------------------------------------------------
    def _prepare_batch(self) -> TetherBatch:
        """theta_old log-probs and statistics, mismatch metrics and corrections for TRL's current local batch."""
        prompt_ids, completion_ids, engine_logps = self._rollout
        c_ids = self._pad([torch.tensor(r) for r in completion_ids], "right", self._tokenizer.pad_token_id)
        mask = self._pad([torch.ones(len(r), dtype=torch.long) for r in completion_ids], "right", 0)
        if self.mask_truncated_completions:  # as TRL masks them
            ends = torch.tensor([r[-1] in [*self.eos_token_ids, self._tokenizer.pad_token_id] for r in completion_ids])
            mask = mask * ends[:, None]
        if self._captured is None:  # TRL runs no theta_old forward in this setup: the one we need
            self._own_old_forward(prompt_ids, c_ids, mask)
        old_logp, hidden = self._captured
        old_logp, mask = old_logp.float().cpu(), mask.bool().cpu()
        stats = {"logp": old_logp}
        if self.stat_names:
            stats.update(self._logit_stats(hidden, c_ids))
        B, G = len(completion_ids), self.num_generations if self.model.training else self.num_generations_eval
        group_ids = (self.accelerator.process_index * B + torch.arange(B)) // G
        batch = TetherBatch(mask, group_ids, stats)
        if self.corrects and self.model.training:
            self._correct(batch, old_logp, engine_logps)
        return batch

    def _pad(self, rows: list[Tensor], side: str, value) -> Tensor:
        return pad(rows, padding_value=value, padding_side=side, pad_to_multiple_of=self.pad_to_multiple_of)

    def _own_old_forward(self, prompt_ids: list, c_ids: Tensor, c_mask: Tensor) -> None:
        p_ids = self._pad([torch.tensor(r) for r in prompt_ids], "left", self._tokenizer.pad_token_id)
        p_mask = self._pad([torch.ones(len(r), dtype=torch.long) for r in prompt_ids], "left", 0)
        dev = self.accelerator.device
        ids, attn = torch.cat([p_ids, c_ids], 1).to(dev), torch.cat([p_mask, c_mask], 1).to(dev)
        self._await_old = True
        size = self.args.per_device_train_batch_size if self.model.training else self.args.per_device_eval_batch_size
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            self._get_per_token_logps_and_entropies(self.model, ids, attn, c_ids.shape[1], batch_size=size)

    @torch.no_grad()
    def _logit_stats(self, hidden: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """tether's LOGIT_STATS of the captured hidden states (B, T, H): one LM-head projection, `_TILE` rows at a
        time, at TRL's sampling temperature."""
        head = self._hf_model().get_output_embeddings()
        params = [p for p in (head.weight, head.bias) if p is not None]
        B, T, H = hidden.shape
        h, tgt = hidden.reshape(B * T, H), targets.reshape(B * T).to(hidden.device)
        parts: dict[str, list[Tensor]] = {n: [] for n in self.stat_names}
        with maybe_gather_lm_head_ctx(*params):  # ZeRO-3 shards the head outside its own forward
            weight, bias = head.weight, head.bias
            if hasattr(weight, "full_tensor"):  # FSDP2 DTensor, as TRL's fused head does
                weight, bias = weight.full_tensor(), None if bias is None else bias.full_tensor()
            for s in range(0, B * T, _TILE):
                logits = F.linear(h[s:s + _TILE].to(weight.dtype), weight, bias)             # (tile, V)
                out = score_tokens(logits, tgt[s:s + _TILE], temperature=self.temperature, stats=self.stat_names)
                for n in self.stat_names:
                    parts[n].append(out[n].cpu())
        return {n: torch.cat(v).reshape(B, T) for n, v in parts.items()}

    def _correct(self, batch: TetherBatch, old_logp: Tensor, engine_logps: list | None) -> None:
        k = self.correction
        if engine_logps is None:
            raise RuntimeError(f"correction.name={k.name!r} needs the rollout engine's log-probs "
                               "and TRL returned none: "
                               "use vLLM (use_vllm=True) or a rollout_func returning 'logprobs' (engine_rollout)")
        rows = [torch.tensor([float("nan") if x is None else x for x in r], dtype=torch.float32) for r in engine_logps]
        rollout = self._pad(rows, "right", 0.0).cpu()
        # vLLM could not score a token (NaN): no mismatch evidence there, as TRL neutralises it in its own IS
        rollout = torch.where(torch.isnan(rollout) | ~batch.mask, old_logp, rollout)
        lam = float(self.dual_state.value) if self.dual_state is not None else 0.0   # applied in this batch
        g = batch.group_ids - batch.group_ids.min()
        batch.rollout_logp, batch.delta = rollout, token_delta(old_logp, rollout, batch.mask)
        batch.correction = apply_corrections(CorrectionInputs(old_logp, rollout, batch.mask, g, lam), k)
        logs = {f"mismatch/{n}": v for n, v in mismatch_metrics(old_logp, rollout, batch.mask, c=k.c).items()}
        logs.update({f"clip/{n}": v for n, v in batch.correction.diagnostics.items()})
        dev = self.accelerator.device
        for key, v in logs.items():  # TRL's convention: the mean over processes of each process's value
            self._metrics["train"][key].append(self.accelerator.gather(v.reshape(1).to(dev)).nanmean().item())

    def _dual_step(self, batch: TetherBatch) -> None:
        """One projected dual step on the global token mean of delta: every rank reduces the same sums and so
        holds the same lambda (no broadcast needed)."""
        local = torch.stack([batch.delta.sum(), batch.mask.sum()]).double().to(self.accelerator.device)
        total = self.accelerator.reduce(local, reduction="sum").cpu()                   # identity on 1 process
        lam = float(self.dual_state.value)
        self.dual_state = self.dcmdp.update(self.dual_state, total[0] / total[1].clamp(min=1))
        self._metrics["train"]["dual/dcmdp/lambda"].append(lam)
        self._metrics["train"]["dual/dcmdp/violation"].append(float(self.dual_state.violation))

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def tether_state_dict(self) -> dict:
        cbs = {type(cb).__name__: cb.state_dict() for cb in self.callback_handler.callbacks
               if isinstance(cb, TetherCallback)}
        return {"dual": None if self.dual_state is None else self.dual_state.state_dict(), "callbacks": cbs}

    def load_tether_state_dict(self, state: dict) -> None:
        if self.dual_state is not None:
            self.dual_state = DualState.from_state_dict(state["dual"])
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, TetherCallback) and type(cb).__name__ in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][type(cb).__name__])

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            torch.save(self.tether_state_dict(), os.path.join(self._get_output_dir(trial=trial), folder, STATE_FILE))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = None if checkpoint is None else os.path.join(checkpoint, STATE_FILE)
        if path is not None and os.path.exists(path):
            self.load_tether_state_dict(torch.load(path, weights_only=True))


def engine_rollout(precision: str = "fp32", *, noise: float = 0.0, seed: int = 0,
                   backend: str = "auto") -> Callable[[list, GRPOTrainer], dict]:
    """A TRL `rollout_func` that samples with tether's `RolloutEngine` at `precision` and returns its log-probs.

    The CPU stand-in for vLLM: the engine keeps its own copy of the weights, re-synced from the
    trainer's model whenever TRL's global step changes, so an fp16/int8/int4 engine produces a real train/inference
    mismatch. `noise` > 0 adds N(0, noise^2) to the returned log-probs (clamped at 0): a controlled mismatch.
    Text prompts, or conversational ones (a list of messages per row, rendered by the tokenizer's chat template);
    TRL's `top_k`/`min_p`/`repetition_penalty` are not applied by the engine.
    """
    engine = RolloutEngine(precision=precision, backend=backend)
    gen = torch.Generator().manual_seed(seed)
    synced: dict[str, int | None] = {"step": None}

    def rollout(prompts: list, trainer: GRPOTrainer) -> dict:
        if synced["step"] != trainer.state.global_step:
            engine.sync_from(HFPolicy(trainer.accelerator.unwrap_model(trainer.model)))
            synced["step"] = trainer.state.global_step
        tok = trainer.processing_class
        if all(isinstance(p, str) for p in prompts):
            prompt_ids = tok(text=prompts)["input_ids"]
        else:  # conversational rows: TRL leaves the chat template to the rollout function (its special tokens included)
            texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
            prompt_ids = tok(text=texts, add_special_tokens=False)["input_ids"]
        ids, mask = pad_left(prompt_ids, tok.pad_token_id)
        out = engine.generate(ids, mask, max_new_tokens=trainer.max_completion_length, eos_id=tok.eos_token_id,
                              pad_id=tok.pad_token_id, temperature=trainer.temperature, top_p=trainer.top_p,
                              generator=gen)
        logp = out.logp
        if noise:
            logp = (logp + noise * torch.randn(logp.shape, generator=gen)).clamp(max=0.0)
        n = out.lengths.tolist()
        return {"prompt_ids": prompt_ids,
                "completion_ids": [row[:k] for row, k in zip(out.tokens.tolist(), n, strict=True)],
                "logprobs": [row[:k] for row, k in zip(logp.tolist(), n, strict=True)]}

    return rollout
