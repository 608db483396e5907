"""Ahead-of-time compiles of sampling and training for a TPU slice on
a CPU host, and the roofline estimate of a round
(`python -m lmsi.capacity.aot`).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # aot
  from lmsi.capacity.aot import (
      parse_slice,
      compile_sample,
      compile_train,
      describe)
  # estimates
  from lmsi.capacity.estimates import roofline, Round

__all__ = [
    'parse_slice',
    'compile_sample',
    'compile_train',
    'describe',
    'roofline',
    'Round',
]
