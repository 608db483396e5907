"""Whole studies over the stages: one driver (`run_arms` over a
`RunContext`: base, LMSI rounds, control, no-vote, ablations, students),
the demo study (`python -m lmsi.pipeline`), the study on any task
(`python -m lmsi.study`), the results schema (metrics.json), the paper's
settings, the report, and the README's demo block
(`python -m lmsi.studies.readme`, `make readme`).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # common: the driver and its arms
  from lmsi.studies.common import (
      Ablation, Arms, Model, RunContext, SelfGenerated, Student, run_arms)
  # results: what metrics.json holds
  from lmsi.studies.results import ArmResult, StudentResult, StudyResult
  # demo
  from lmsi.studies.demo import DemoContext, run_pipeline
  # benchmark
  from lmsi.studies.benchmark import (
      BenchmarkContext, StudyArms, StudyTasks, run_study)
  # paper
  from lmsi.studies.paper import deviations, run_settings
  # report
  from lmsi.studies.report import write_report

__all__ = [
    'Ablation',
    'Arms',
    'Model',
    'RunContext',
    'SelfGenerated',
    'Student',
    'run_arms',
    'ArmResult',
    'StudentResult',
    'StudyResult',
    'DemoContext',
    'run_pipeline',
    'BenchmarkContext',
    'StudyArms',
    'StudyTasks',
    'run_study',
    'deviations',
    'run_settings',
    'write_report',
]
