"""The demo: its generated arithmetic task, its pretrained base
(`python -m lmsi.demo.base`) and its reasoning styles.
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # arithmetic
  from lmsi.demo.arithmetic import (
      DataConfig,
      Difficulty,
      make_problem,
      write_splits)
  # base
  from lmsi.demo.base import build

__all__ = [
    'DataConfig',
    'Difficulty',
    'make_problem',
    'write_splits',
    'build',
]
