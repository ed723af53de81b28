"""Every option of every registered attack has a stated meaning (``jaxrobust list --attack NAME`` prints it)."""

import pytest

from jaxrobust.attacks import option_docs, registry


@pytest.mark.parametrize("name", registry.attack_names())
def test_every_option_of_every_attack_has_a_meaning(name):
  docs = registry.attack_option_docs(name)
  assert list(docs) == list(registry.attack_parameters(name))
  undocumented = [k for k, v in docs.items() if len(v) < 8]
  assert not undocumented, (f"attack {name!r}: say what {undocumented} mean in its docstring ('name: meaning') "
                            "or in jaxrobust/attacks/option_docs.py")


def test_an_option_name_shared_by_unrelated_attacks_keeps_each_meaning():
  assert "L1" in registry.attack_option_docs("ead")["beta"]
  assert "FAB" in registry.attack_option_docs("fab")["beta"]
  assert "VMI" in registry.attack_option_docs("vmifgsm")["beta"]


def test_docstring_entries_are_parsed_in_every_written_form():
  doc = """Attack.

  Args:
    eps, step_size: budget and step. steps: how many
      iterations (static).
    decay / nesterov: momentum options. other: not an option.
    loss: as ``mim``.

  Returns x_adv.
  """
  found = option_docs._from_docstring(doc, ["eps", "step_size", "steps", "decay", "nesterov", "loss"])
  assert found["eps"] == found["step_size"] == "budget and step."
  assert found["steps"] == "how many iterations (static)."
  assert found["decay"] == found["nesterov"] == "momentum options."
  assert found["loss"] == "as ``mim``."
