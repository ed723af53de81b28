"""The method registry: every method module declares REGISTRY, and a module that fails to import is an error."""

import pytest

from jaxrobust.methods import registry
from jaxrobust.methods.base import Method


def test_every_name_builds_a_method_of_that_name():
  names = registry.method_names()
  assert {"standard", "pgd_at", "trades", "mart", "adap_lpn", "udr_pgd"} <= set(names)
  for name in ("standard", "pgd_at", "trades", "ap_max"):
    method = registry.get_method(name)
    assert isinstance(method, Method) and method.name == name
  assert registry.method_factory("PGD-AT") is registry.method_factory("pgd_at")
  with pytest.raises(ValueError, match="unknown method 'nope'; available: .*pgd_at"):
    registry.get_method("nope")


def test_a_module_that_does_not_import_or_declare_is_an_error(monkeypatch):
  monkeypatch.setattr(registry, "_METHOD_MODULES", registry._METHOD_MODULES + ("jaxrobust.methods.not_there",))
  with pytest.raises(ModuleNotFoundError):
    registry.method_names()
  monkeypatch.setattr(registry, "_METHOD_MODULES", ("jaxrobust.methods.base",))
  with pytest.raises(AttributeError, match="REGISTRY"):
    registry.method_names()
