"""Self-generated inputs (paper section 3.3): questions written from a
few seeds (`python -m lmsi.question_gen`) and few-shot exemplars from the
model's own zero-shot answers.
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # questions
  from lmsi.self_inputs.questions import (
      QuestionGenConfig,
      generate_pool,
      generate_pool_task)
  # exemplar_gen
  from lmsi.self_inputs.exemplar_gen import (
      ExemplarGenConfig,
      generate_exemplars,
      read_exemplars)
  # question_filter
  from lmsi.self_inputs.question_filter import filter_candidates

__all__ = [
    'QuestionGenConfig',
    'generate_pool',
    'generate_pool_task',
    'ExemplarGenConfig',
    'generate_exemplars',
    'read_exemplars',
    'filter_candidates',
]
