"""Shared by the flow tests: every device test runs on the CPU and repeats on CUDA where a GPU is visible."""

import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param
