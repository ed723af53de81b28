"""XLA:CPU settings that jaxrobust applies at import (before JAX creates its CPU client).

``--xla_cpu_experimental_ynn_fusion_type=`` (empty: no YNNPACK fusions). jaxlib 0.10 hands
convolutions to YNNPACK fusions by default; on the 2-core AMD EPYC (Zen 4) CI machine these ran a
3x3 32->32 convolution on a 128x26x26 batch in 79 ms against 9 ms on XLA's Eigen path (PyTorch's
oneDNN: 10 ms), and a PGD-10 on SmallCNN took 1.38 s against 0.55 s without them (BENCHMARKS.md).

Rules: the flag is only added when the user's ``XLA_FLAGS`` does not mention it, only for jaxlib
versions known to accept it (an unknown flag aborts the process), and only while no JAX backend
exists yet (flags are read once, when the first backend is created). ``JAXROBUST_XLA_FLAGS=0``
turns all of this off. ``status()`` says what happened.
"""

from __future__ import annotations

import os
import sys

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
# jaxlib (major, minor) versions whose XLA:CPU accepts YNN_FLAG (verified: 0.10.2).
_KNOWN = {(0, 10)}

_status = "not configured"


def _jaxlib_version():
  try:
    from importlib.metadata import version
    parts = version("jaxlib").split(".")
    return int(parts[0]), int(parts[1])
  except Exception:  # noqa: BLE001 - no jaxlib metadata: do nothing
    return None


def _backend_initialized() -> bool:
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except Exception:  # noqa: BLE001 - private API moved: assume the worst, do nothing
    return True


def configure() -> str:
  """Adds YNN_FLAG to XLA_FLAGS when it is safe to; returns (and records) what was done."""
  global _status
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("JAXROBUST_XLA_FLAGS", "1") == "0":
    _status = "disabled by JAXROBUST_XLA_FLAGS=0"
  elif "xla_cpu_experimental_ynn_fusion_type" in flags:
    _status = "left to the user's XLA_FLAGS"
  elif _jaxlib_version() not in _KNOWN:
    _status = f"not applied: jaxlib {_jaxlib_version()} is not a version known to accept {YNN_FLAG}"
  elif _backend_initialized():
    _status = "not applied: a JAX backend already existed when jaxrobust was imported"
  else:
    os.environ["XLA_FLAGS"] = (flags + " " + YNN_FLAG).strip()
    _status = f"applied: XLA_FLAGS += {YNN_FLAG}"
  return _status


def status() -> str:
  return _status
