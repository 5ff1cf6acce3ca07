import sys

import pytest

from tether.core.config import ConfigError
from tether.core.extras import EXTRAS, MissingExtra, available, require


def test_a_missing_module_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)   # as if not installed
    assert not available("transformers") and available("torch")
    with pytest.raises(MissingExtra, match=r"model.arch='qwen2' needs transformers.*pip install 'tether-rl\[lm\]'"):
        require("transformers", purpose="model.arch='qwen2'")
    assert issubclass(MissingExtra, ConfigError)              # the CLI prints it as one line


def test_several_missing_modules_list_each_extra_once(monkeypatch):
    for m in ("ogbench", "gymnasium", "ray"):
        monkeypatch.setitem(sys.modules, m, None)
    with pytest.raises(MissingExtra, match=r"ogbench, gymnasium, ray.*tether-rl\[flow,scale\]"):
        require("ogbench", "gymnasium", "ray", purpose="x")


def test_every_extra_named_exists_in_pyproject():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert all(f"\n{extra} = [" in text for extra in set(EXTRAS.values()))


def test_hf_and_lora_model_specs_need_their_extras(monkeypatch):
    from tether.lm.model.build import ModelSpec

    ModelSpec(arch="qwen2", lora_r=4)                          # installed here: fine
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(MissingExtra, match=r"model.lora_r=4.*peft.*tether-rl\[lm\]"):
        ModelSpec(arch="qwen2", lora_r=4)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingExtra, match=r"model.arch='llama'.*transformers"):
        ModelSpec(arch="llama")
    ModelSpec()                                                # TinyLM needs neither


@pytest.mark.slow
def test_a_core_only_install_runs_the_first_commands_and_names_every_missing_extra(tmp_path):
    """A fresh venv with torch and `pip install tether-rl` (no extras): the README's first commands run, and
    every command that needs an extra fails with one line naming it (minutes: it installs torch)."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip, tether = str(venv / "bin" / "pip"), str(venv / "bin" / "tether")
    subprocess.run([pip, "install", "-q", "torch==2.13.0"], check=True)
    subprocess.run([pip, "install", "-q", str(repo)], check=True)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([tether, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    for args in [("lm", "train", "--preset", "smoke", "--steps", "2", "--run.dir", "runs/smoke"),
                 ("coherence", "sweep", "--env", "mountain-race", "--rounds", "2", "--json"),
                 ("flow", "toy", "--steps", "5", "--bc-steps", "5", "--width", "16", "--json")]:
        done = run(*args)
        assert done.returncode == 0, f"tether {' '.join(args)}:\n{done.stderr[-2000:]}"
    smoke = ("lm", "train", "--preset", "smoke")
    for args, extra in [((*smoke, "--model.arch", "qwen2", "--model.path", ""), "lm"),
                        ((*smoke, "--run.tensorboard", "--run.dir", "runs/tb"), "tensorboard"),
                        (("flow", "data", "--env", "scene-play", "--episodes", "1", "--out", "data"), "flow"),
                        (("flow", "train", "--preset", "smoke", "--run.dir", "runs/flow"), "flow")]:
        done = run(*args)
        err = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(err) == 1 and f"pip install 'tether-rl[{extra}]'" in err[0], \
            f"tether {' '.join(args)}: rc {done.returncode}\n{done.stderr[-2000:]}"
    assert not (tmp_path / "runs" / "tb").exists() and not (tmp_path / "data").exists()  # refused before writing


def test_flow_data_and_train_and_tensorboard_name_their_extras_before_any_file(monkeypatch, tmp_path, capsys):
    from tether.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ogbench", None)
    assert main(["flow", "data", "--env", "scene-play", "--out", "data"]) == 2
    assert "tether flow data" in capsys.readouterr().err and not (tmp_path / "data").exists()
    assert main(["flow", "train", "--preset", "smoke", "--run.dir", "runs/f"]) == 2
    assert "pip install 'tether-rl[flow]'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert main(["lm", "train", "--preset", "smoke", "--run.tensorboard", "--run.dir", "runs/tb"]) == 2
    assert "pip install 'tether-rl[tensorboard]'" in capsys.readouterr().err and not (tmp_path / "runs").exists()
