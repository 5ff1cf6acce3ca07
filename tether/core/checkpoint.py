"""Atomic checkpoints of everything a run needs to continue exactly: models, optimizers, duals, counters, RNGs.

A checkpoint is a directory `step_XXXXXXX/` holding
    tensors.safetensors   every tensor and numpy array of the state (safetensors: no pickle, so no code on load)
    state.json            the rest of the state as a JSON tree; tensors are referenced by their safetensors key
    trainer_state.json    the JSON-able counters (`meta`), for humans and tools
It is written to a hidden `.step_XXXXXXX.tmp-PID/`, fsynced, then renamed into place: a rename is atomic on
POSIX, so a crash during a save leaves the previous checkpoints intact and never a half-written `step_*`.

In state.json, str-keyed dicts, lists, str, int, finite floats, bool and None are plain JSON. Everything else is an
object with one reserved key, so that `load_checkpoint` returns the very structure that was saved:
    {"__tensor__": key}                          a torch tensor ("parameter": requires_grad for an nn.Parameter)
    {"__ndarray__": key, "dtype": "<u4", ...}    a numpy array ("scalar": true for a numpy scalar)
    {"__tuple__": [...]}                         a tuple (python's `random.getstate()` is nested tuples)
    {"__float__": "nan" | "inf" | "-inf"}        a non-finite float (state.json is strict JSON)
    {"__dict__": {...} | [[key, value], ...]}    a dict with non-str keys (optimizer state by param id), a
                                                 dict using a reserved key, or an OrderedDict ("type", and the
                                                 `_metadata` that `nn.Module.load_state_dict` reads)
Tensors are stored contiguous and on the CPU; two entries that are the same view share one key (and are one tensor
again after loading); a tensor that overlaps another one's memory is stored as its own copy.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from tether.core.config import ConfigError
from tether.core.stability import NonFiniteError

__all__ = ["save_checkpoint", "load_checkpoint", "load_latest", "latest_checkpoint", "clean_stale", "rng_state",
           "set_rng_state", "CheckpointError", "CheckpointWriteError", "CorruptCheckpointError"]

STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"
META_FILE = "trainer_state.json"
LEGACY_FILE = "state.pt"
"""What tether wrote before this format: one pickled `torch.save`; refused on load (it would run code)."""
VERSION = 1

_RESERVED = ("__tensor__", "__ndarray__", "__tuple__", "__float__", "__dict__")
_STEP = re.compile(r"step_(\d+)")
_STALE = re.compile(r"\.(step_.+)\.(tmp|old)-(\d+)")
_BASE_DTYPES = {torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
                torch.int8, torch.uint8, torch.bool}
_STORABLE = set(getattr(safetensors.torch, "_TYPES", {}).values()) or _BASE_DTYPES
"""Tensor dtypes the installed safetensors can store (uint16/32/64 and float8 only in recent versions)."""


class CheckpointError(ConfigError):
    """A checkpoint cannot be used; the message is one line naming the directory and the reason."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's files are missing, truncated or unparsable (`load_latest` falls back past it)."""


class CheckpointWriteError(CheckpointError, OSError):
    """Writing a checkpoint failed (a full disk, a read-only directory); nothing was left behind."""


def _where(path: tuple) -> str:
    return "state" + "".join(f"[{k!r}]" for k in path)


class _Encoder:
    """Walks a state: returns its JSON tree and collects its tensors (contiguous, CPU, no two sharing memory)."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._views: dict[tuple, str] = {}    # identical views of one memory -> one key
        self._storages: set[int] = set()      # storages already holding a stored tensor

    def encode(self, obj: Any, path: tuple = ()) -> Any:
        t = type(obj)
        if obj is None or t in (bool, int, str):
            return obj
        if t is float:
            return obj if math.isfinite(obj) else {"__float__": repr(obj)}  # 'nan', 'inf', '-inf'
        if t is list:
            return [self.encode(v, (*path, i)) for i, v in enumerate(obj)]
        if t is tuple:
            return {"__tuple__": [self.encode(v, (*path, i)) for i, v in enumerate(obj)]}
        if t in (dict, OrderedDict):
            return self._dict(obj, path)
        if t in (torch.Tensor, torch.nn.Parameter):
            return self._tensor(obj, path)
        if t is np.ndarray or isinstance(obj, np.generic):
            return self._ndarray(obj, path)
        raise TypeError(f"save_checkpoint: {_where(path)} is a {t.__module__}.{t.__qualname__}; a checkpoint holds "
                        "only tensors, numpy arrays, dict/OrderedDict, list, tuple, str, int, float, bool and None "
                        "(nothing is pickled): convert it to a dict in the caller's state_dict")

    def _dict(self, obj: dict, path: tuple) -> Any:
        for k in obj:
            if not (k is None or type(k) in (bool, int, float, str, tuple)):
                raise TypeError(f"save_checkpoint: {_where(path)} has a key of type {type(k).__name__} ({k!r}); "
                                "dict keys must be str, int, float, bool, None or tuples of those")
        values = {k: self.encode(v, (*path, k)) for k, v in obj.items()}
        str_keys = all(type(k) is str for k in obj)
        if type(obj) is dict and str_keys and not any(k in values for k in _RESERVED):
            return values
        out: dict[str, Any] = {"__dict__": values if str_keys else [[self.encode(k), v] for k, v in values.items()]}
        if type(obj) is OrderedDict:
            out["type"] = "OrderedDict"
            extra = set(vars(obj)) - {"_metadata"}
            if extra:
                raise TypeError(f"save_checkpoint: {_where(path)} is an OrderedDict with attributes {sorted(extra)}")
            if hasattr(obj, "_metadata"):  # nn.Module.state_dict's per-module versions
                out["metadata"] = self.encode(obj._metadata, (*path, "_metadata"))
        return out

    def _tensor(self, t: torch.Tensor, path: tuple) -> dict[str, Any]:
        if t.dtype not in _STORABLE:
            raise TypeError(f"save_checkpoint: {_where(path)} is a {t.dtype} tensor, which safetensors cannot store")
        if t.is_floating_point():
            finite = torch.isfinite(t.float() if t.element_size() == 1 else t).all()  # float8 has no isfinite
            if not bool(finite):
                raise NonFiniteError(f"save_checkpoint: {_where(path)} holds NaN or inf; a non-finite checkpoint is "
                                     "never written (the previous checkpoints are the ones to resume from)")
        out: dict[str, Any] = {"__tensor__": self._add(t.detach(), path)}
        if type(t) is torch.nn.Parameter:
            out["parameter"] = t.requires_grad
        return out

    def _ndarray(self, a: np.ndarray | np.generic, path: tuple) -> dict[str, Any]:
        arr = np.asarray(a)
        if arr.dtype.kind not in "biufc" or arr.dtype.fields is not None:
            raise TypeError(f"save_checkpoint: {_where(path)} is a numpy array of dtype {arr.dtype}; only numeric "
                            "and bool arrays are stored")
        out: dict[str, Any] = {"__ndarray__": None, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        try:
            t = torch.from_numpy(np.require(arr, requirements=["C", "W"]))
            raw = t.dtype not in _STORABLE
        except (TypeError, ValueError):  # a dtype or byte order torch lacks
            raw = True
        if raw:  # stored as its bytes; state.json keeps the dtype and shape
            t, out["raw"] = torch.from_numpy(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).copy()), True
        out["__ndarray__"] = self._add(t, path)
        if isinstance(a, np.generic):
            out["scalar"] = True
        return out

    def _add(self, t: torch.Tensor, path: tuple) -> str:
        view = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        if t.numel() > 0 and view in self._views:
            return self._views[view]
        cpu = t.cpu()
        if not cpu.is_contiguous() or cpu.untyped_storage().data_ptr() in self._storages:
            cpu = cpu.clone(memory_format=torch.contiguous_format)
        self._storages.add(cpu.untyped_storage().data_ptr())
        key = "/".join(str(k) for k in path) or "state"
        while key in self.tensors:
            key += "'"
        self.tensors[key] = cpu
        if t.numel() > 0:
            self._views[view] = key
        return key


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        t = tensors[node["__tensor__"]]
        return torch.nn.Parameter(t, requires_grad=node["parameter"]) if "parameter" in node else t
    if "__ndarray__" in node:
        t, dtype = tensors[node["__ndarray__"]], np.dtype(node["dtype"])
        arr = t.numpy().view(dtype).reshape(node["shape"]) if node.get("raw") else t.numpy()
        if arr.dtype != dtype or list(arr.shape) != node["shape"]:
            raise ValueError(f"array {node['__ndarray__']!r} is {arr.dtype} {list(arr.shape)}, state.json says "
                             f"{dtype} {node['shape']}")
        return arr[()] if node.get("scalar") else arr
    if "__tuple__" in node:
        return tuple(_decode(v, tensors) for v in node["__tuple__"])
    if "__float__" in node:
        if node["__float__"] not in ("nan", "inf", "-inf"):
            raise ValueError(f"bad non-finite float {node['__float__']!r}")
        return float(node["__float__"])
    if "__dict__" not in node:
        return {k: _decode(v, tensors) for k, v in node.items()}
    items = node["__dict__"]
    pairs = items.items() if isinstance(items, dict) else ((_decode(k, tensors), v) for k, v in items)
    out = (OrderedDict if node.get("type") == "OrderedDict" else dict)((k, _decode(v, tensors)) for k, v in pairs)
    if "metadata" in node:
        out._metadata = _decode(node["metadata"], tensors)
    return out


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text(file: Path, text: str) -> None:
    with open(file, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _write(tmp: Path, tensors: dict[str, torch.Tensor], state_text: str, meta_text: str) -> None:
    if tmp.exists():  # left by an earlier save of this very process
        shutil.rmtree(tmp)
    tmp.mkdir()
    safetensors.torch.save_file(tensors, str(tmp / TENSORS_FILE), metadata={"format": "pt"})
    _fsync(tmp / TENSORS_FILE)
    with safetensors.safe_open(str(tmp / TENSORS_FILE), "pt") as f:  # the header parses, the data is all there
        if set(f.keys()) != set(tensors):
            raise OSError(f"{TENSORS_FILE} was written incompletely")
    _write_text(tmp / STATE_FILE, state_text)
    _write_text(tmp / META_FILE, meta_text)
    _fsync(tmp)


def _swap(tmp: Path, path: Path) -> None:
    """Rename tmp to path; a checkpoint already at path (same step) is kept aside until the new one is in place."""
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        if old.exists():  # a leftover of an earlier save of this process whose clean-up failed
            shutil.rmtree(old)
        path.rename(old)
    try:
        tmp.rename(path)
    except OSError:
        if old.exists():
            old.rename(path)
        raise
    _fsync(path.parent)
    if old.exists():
        shutil.rmtree(old)


def save_checkpoint(path: str | Path, state: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
    """Atomically write `state` (nested dicts/lists/tuples of tensors, numpy arrays and JSON values) and JSON `meta`
    to directory `path`. Raises TypeError (an unsupported object) or NonFiniteError (a NaN/inf floating tensor),
    naming its key path, before anything is written; CheckpointWriteError when the disk refuses, leaving nothing."""
    path = Path(path)
    enc = _Encoder()
    state_text = json.dumps({"version": VERSION, "state": enc.encode(state)}, allow_nan=False)
    meta_text = json.dumps(meta or {}, indent=2)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(tmp, enc.tensors, state_text, meta_text)
        _swap(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, OSError | safetensors.SafetensorError):
            raise
        reason = " ".join(str(e).split())
        err = CheckpointWriteError(f"cannot write checkpoint {path}: {reason} (earlier checkpoints are untouched)")
        err.errno = getattr(e, "errno", None)
        raise err from None
    return path


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    missing = [n for n in (STATE_FILE, TENSORS_FILE) if not (path / n).is_file()]
    if missing:
        raise CorruptCheckpointError(f"checkpoint {path} is incomplete: no {' and no '.join(missing)}")
    try:
        doc = json.loads((path / STATE_FILE).read_text())
        tensors = safetensors.torch.load_file(str(path / TENSORS_FILE), device="cpu")
    except (OSError, UnicodeDecodeError, ValueError, safetensors.SafetensorError) as e:
        raise CorruptCheckpointError(f"checkpoint {path} is unreadable: {' '.join(str(e).split())}") from None
    if not isinstance(doc, dict) or "state" not in doc:
        raise CorruptCheckpointError(f"checkpoint {path}: {STATE_FILE} holds no state")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {doc.get('version')!r}; this tether reads "
                              f"version {VERSION}")
    return doc, tensors


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state `save_checkpoint` wrote to `path`, on the CPU; nothing is unpickled."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if (path / LEGACY_FILE).exists() and not (path / STATE_FILE).exists():
        raise CheckpointError(f"checkpoint format changed: {path / LEGACY_FILE} is a pickled checkpoint of an earlier "
                              f"tether, which is not loaded (unpickling runs code); start a new run or re-save it")
    doc, tensors = _read(path)
    try:
        return _decode(doc["state"], tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptCheckpointError(f"checkpoint {path}: {STATE_FILE} does not match {TENSORS_FILE} "
                                     f"({type(e).__name__}: {e})") from None


def _step_dirs(checkpoints_dir: str | Path) -> list[Path]:
    """`step_<int>` directories, newest first (others, like a stray `step_abc`, are not checkpoints)."""
    d = Path(checkpoints_dir)
    if not d.is_dir():
        return []
    steps = [(int(m[1]), p) for p in d.iterdir() if (m := _STEP.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(steps, key=lambda s: (s[0], s[1].name), reverse=True)]


def latest_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    """The `step_<int>` directory with the largest step that has its files (or an old-format `state.pt`, which
    `load_checkpoint` then refuses with a clear error), or None. Temporary dirs (dot-prefixed) are ignored."""
    for p in _step_dirs(checkpoints_dir):
        if ((p / STATE_FILE).is_file() and (p / TENSORS_FILE).is_file()) or (p / LEGACY_FILE).is_file():
            return p
    return None


def load_latest(checkpoints_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """(path, state) of the newest loadable checkpoint, or None. A checkpoint whose files are missing, truncated
    or unparsable is skipped with a warning naming it; an old-format one raises CheckpointError."""
    for p in _step_dirs(checkpoints_dir):
        try:
            return p, load_checkpoint(p)
        except CorruptCheckpointError as e:
            warnings.warn(f"{e}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
    return None


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows: keep the folder
        return True
    if pid <= 0:  # not a process id (0 and -1 would address process groups)
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(checkpoints_dir: str | Path) -> list[Path]:
    """Remove the `.step_*.tmp-PID` / `.step_*.old-PID` folders that saves killed mid-way left behind, when
    process PID is gone; returns them. An `.old` folder whose `step_*` is missing (killed between the two
    renames of a same-step save) is the only copy of that checkpoint: it is renamed back instead."""
    d = Path(checkpoints_dir)
    if not d.is_dir():
        return []
    done = []
    for p in sorted(d.iterdir()):
        m = _STALE.fullmatch(p.name)
        if m is None or not p.is_dir() or _alive(int(m[3])):
            continue
        if m[2] == "old" and not (d / m[1]).exists():
            p.rename(d / m[1])
        else:
            shutil.rmtree(p, ignore_errors=True)
        done.append(p)
    return done


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Capture python, numpy and torch global RNG states plus named torch generators."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    for k, g in (generators or {}).items():
        if k not in state["generators"]:
            raise KeyError(f"checkpoint has no RNG state for generator {k!r}; it has {sorted(state['generators'])}")
        g.set_state(state["generators"][k])
