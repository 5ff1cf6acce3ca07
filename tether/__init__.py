"""tether: stable RL fine-tuning of pretrained policies.

Families are imported explicitly (`tether.core`, `tether.coherence`, `tether.lm`, `tether.flow`);
importing `tether` itself costs nothing.
"""

__version__ = "0.1.0"
