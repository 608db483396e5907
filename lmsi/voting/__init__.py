"""The vote: majority and maj@k over extracted answers, calibration,
answer matching modes, and the aggregation stage (kept paths -> the
self-generated mixture; what `python -m lmsi.aggregate` runs).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # majority
  from lmsi.voting.majority import (
      Vote,
      majority_vote,
      majority_at_k,
      calibration_bins)
  # match
  from lmsi.voting.match import is_correct, accuracy
  # aggregation
  from lmsi.voting.aggregation import (
      select_paths,
      to_examples,
      aggregate,
      aggregate_task)

__all__ = [
    'Vote',
    'majority_vote',
    'majority_at_k',
    'calibration_bins',
    'is_correct',
    'accuracy',
    'select_paths',
    'to_examples',
    'aggregate',
    'aggregate_task',
]
