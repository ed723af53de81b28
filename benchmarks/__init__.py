"""jaxrobust's benchmarks against PyTorch: not part of the installed package.

Run from the repository root as ``python -m benchmarks.<module>`` (see README.md here); needs the
``[torch]`` extra for the PyTorch columns. ``torch_models`` holds the PyTorch twins of the Flax
models (also used by the tests), ``torch_steps`` the PyTorch attack and train steps.
"""

# Importing jaxrobust first sets its XLA:CPU flags before any JAX backend exists (jaxrobust/xla_cpu.py);
# a benchmark that let JAX start first measured XLA's default CPU convolutions, up to 3x slower here.
import jaxrobust  # noqa: E402,F401
