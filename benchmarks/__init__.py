"""jaxrobust's benchmarks against PyTorch: not part of the installed package.

Run from the repository root as ``python -m benchmarks.<module>`` (see README.md here); needs the
``[torch]`` extra for the PyTorch columns. ``torch_models`` holds the PyTorch twins of the Flax
models (also used by the tests), ``torch_steps`` the PyTorch attack and train steps.
"""
