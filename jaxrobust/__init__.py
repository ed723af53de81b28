"""jaxrobust: adversarial robustness research in JAX/Flax."""

__version__ = "0.1.0"
