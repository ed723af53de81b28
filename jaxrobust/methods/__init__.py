"""Training methods (losses + training attacks + method state) and their registry."""

from jaxrobust.methods.base import DatasetInfo, LossAux, Method, StepContext
from jaxrobust.methods.registry import get_method, method_names

__all__ = ["DatasetInfo", "LossAux", "Method", "StepContext", "get_method", "method_names"]
