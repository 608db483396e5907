"""Token lists into fixed-shape arrays for the decoder.

Right-padding to a length, and rounding lengths up to a few buckets so jit
compiles few distinct shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_batch(seqs: Sequence[Sequence[int]], length: int,
              pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads token lists.

  Returns:
    (int32 [B, length] tokens, bool [B, length] valid mask).

  Raises:
    ValueError: if a sequence is longer than `length`.
  """
  tokens = np.full((len(seqs), length), pad_id, np.int32)
  valid = np.zeros((len(seqs), length), bool)
  for i, s in enumerate(seqs):
    if len(s) > length:
      raise ValueError(f'sequence {i} has {len(s)} tokens > length {length}')
    tokens[i, : len(s)] = s
    valid[i, : len(s)] = True
  return tokens, valid


def bucket(n: int, multiple: int = 32) -> int:
  """Rounds a length up so few distinct shapes get compiled."""
  return max(multiple, -(-n // multiple) * multiple)
