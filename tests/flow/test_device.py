"""Device names: the spellings, auto, and the one-line error for CUDA on a machine without a GPU."""

import pytest
import torch

from tether.core.config import ConfigError
from tether.flow.device import check_device_name, resolve_device


def test_cpu_and_auto_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "CPU", "cuda:x", "mps0", ""])
def test_bad_spelling_names_the_value_and_the_choices(bad):
    with pytest.raises(ConfigError, match="expected 'cpu', 'cuda', 'cuda:N' or 'auto'"):
        check_device_name(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_gpu_is_one_clear_line(name):
    with pytest.raises(ConfigError) as e:
        resolve_device(name)
    msg = str(e.value)
    assert "\n" not in msg and f"--device {name}" in msg and "CUDA is not available" in msg and "--device cpu" in msg


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_out_of_range():
    with pytest.raises(ConfigError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
