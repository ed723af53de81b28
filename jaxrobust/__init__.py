"""jaxrobust: adversarial robustness research in JAX/Flax."""

from jaxrobust import xla_cpu as _xla_cpu

_xla_cpu.configure()  # before any JAX backend exists; see jaxrobust/xla_cpu.py

__version__ = "0.1.0"
