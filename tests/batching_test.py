"""pad_batch right-pads with a valid mask; bucket rounds lengths up."""

import numpy as np
import pytest

from lmsi.sampling import batching


def test_pad_batch():
  tokens, valid = batching.pad_batch([[5, 6], [7]], 4)
  assert tokens.dtype == np.int32 and valid.dtype == bool
  assert tokens.tolist() == [[5, 6, 0, 0], [7, 0, 0, 0]]
  assert valid.tolist() == [[True, True, False, False],
                            [True, False, False, False]]
  tokens, _ = batching.pad_batch([[5]], 2, pad_id=9)
  assert tokens.tolist() == [[5, 9]]


def test_pad_batch_names_the_long_sequence():
  with pytest.raises(ValueError, match='sequence 1 has 3 tokens > length 2'):
    batching.pad_batch([[1], [1, 2, 3]], 2)


def test_bucket():
  assert batching.bucket(65) == 96 and batching.bucket(1) == 32
  assert batching.bucket(64) == 64 and batching.bucket(5, multiple=8) == 8
