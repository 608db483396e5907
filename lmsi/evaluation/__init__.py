"""Stage 7: direct, greedy CoT and maj@k accuracy with calibration
(`python -m lmsi.evaluate`), and the self-consistency gap probe
(`python -m lmsi.probe`).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # evaluator
  from lmsi.evaluation.evaluator import EvalConfig, evaluate, evaluate_task
  # gap_probe
  from lmsi.evaluation.gap_probe import (bootstrap_gap, gap, probe,
                                         probe_task)

__all__ = [
    'EvalConfig',
    'evaluate',
    'evaluate_task',
    'bootstrap_gap',
    'gap',
    'probe',
    'probe_task',
]
