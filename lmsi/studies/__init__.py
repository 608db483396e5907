"""Whole studies over the stages: the demo study (base, LMSI rounds,
control, no-vote, ablations; `python -m lmsi.pipeline`), the study on any
task (`python -m lmsi.study`), the paper's settings, the report, and the
README's demo block (`python -m lmsi.studies.readme`, `make readme`).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # demo
  from lmsi.studies.demo import Ablation, Student, run_pipeline
  # benchmark
  from lmsi.studies.benchmark import StudyArms, StudyTasks, run_study
  # paper
  from lmsi.studies.paper import deviations, run_settings
  # report
  from lmsi.studies.report import write_report

__all__ = [
    'Ablation',
    'Student',
    'run_pipeline',
    'StudyArms',
    'StudyTasks',
    'run_study',
    'deviations',
    'run_settings',
    'write_report',
]
