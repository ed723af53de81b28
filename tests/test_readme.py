"""Every ```python block of README.md runs as written (each as its own script, in a fresh folder).

A block right after a line ``<!-- skip-test -->`` is skipped; README says why next to it.
"""

import pathlib
import re
import sys
import types

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- skip-test -->\s*\n)?```python\n(.*?)```", re.S)


def python_blocks():
  text = README.read_text()
  blocks = []
  for match in BLOCK.finditer(text):
    line = text[:match.start(2)].count("\n") + 1
    blocks.append(pytest.param(match.group(2), id=f"README.md:{line}",
                               marks=[pytest.mark.skip("marked <!-- skip-test --> in README")] if match.group(1) else []))
  return blocks


def test_readme_has_python_blocks():
  assert len(python_blocks()) >= 4


@pytest.mark.parametrize("code", python_blocks())
def test_readme_python_block_runs(code, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # blocks write runs/ under the working directory
  # run as a script: its own __main__ module, so 'package.module:function' paths such as '__main__:make_cnn' resolve
  script = types.ModuleType("__main__")
  script.__file__ = str(tmp_path / "readme_block.py")
  monkeypatch.setitem(sys.modules, "__main__", script)
  exec(compile(code, script.__file__, "exec"), script.__dict__)
