"""jaxrobust.xla_cpu: when the XLA:CPU flag is added, and when it is left alone."""

import pytest

from jaxrobust import xla_cpu


@pytest.fixture
def fresh(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.delenv("JAXROBUST_XLA_FLAGS", raising=False)
  monkeypatch.setattr(xla_cpu, "_backend_initialized", lambda: False)
  monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: (0, 10))
  return monkeypatch


def test_applied_and_appended_to_user_flags(fresh):
  fresh.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  assert xla_cpu.configure().startswith("applied")
  import os
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8 " + xla_cpu.YNN_FLAG
  assert xla_cpu.configure() == "left to the user's XLA_FLAGS"  # idempotent: never added twice


@pytest.mark.parametrize("setup,expected", [
    (lambda m: m.setenv("JAXROBUST_XLA_FLAGS", "0"), "disabled"),
    (lambda m: m.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"), "left to"),
    (lambda m: m.setattr(xla_cpu, "_jaxlib_version", lambda: (0, 4)), "not a version known"),
    (lambda m: m.setattr(xla_cpu, "_backend_initialized", lambda: True), "backend already existed"),
])
def test_left_alone(fresh, setup, expected):
  setup(fresh)
  before = __import__("os").environ.get("XLA_FLAGS")
  assert expected in xla_cpu.configure()
  assert __import__("os").environ.get("XLA_FLAGS") == before
