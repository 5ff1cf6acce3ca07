"""Fakes and toy trainers shared by tether's tests and users' tests (may import anything)."""

from tether.testing.toy import ToyConfig, ToyTrainer

__all__ = ["ToyConfig", "ToyTrainer"]
