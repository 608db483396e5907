"""What the stages read and write: record types and their JSONL files,
answers and answer families, the four prompt formats, exemplar sets, task
specs (filled by tasks/), SeqIO inputs and sample shards. Importing it
loads no seqio/TensorFlow (they load where data enters).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # records
  from lmsi.data.records import (
      Question, SampledPath, SelfGenExample, read_jsonl)
  # answers
  from lmsi.data.answers import (
      ANSWER_PREFIX,
      Family,
      extract_answer,
      answers_equal,
      canonical_answer)
  # prompts
  from lmsi.data.prompts import Format, Exemplar, FORMAT_NAMES, render, target
  # taskspec
  from lmsi.data.taskspec import Spec, task_settings, load_questions, load_task

__all__ = [
    'Question',
    'SampledPath',
    'SelfGenExample',
    'read_jsonl',
    'ANSWER_PREFIX',
    'Family',
    'extract_answer',
    'answers_equal',
    'canonical_answer',
    'Format',
    'Exemplar',
    'FORMAT_NAMES',
    'render',
    'target',
    'Spec',
    'task_settings',
    'load_questions',
    'load_task',
]
