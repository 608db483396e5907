"""lmsi.studies.paper: a run's settings against the paper's (manifests)."""

import pytest

from lmsi.evaluation import evaluator as evaluate
from lmsi.studies import paper
from lmsi.sampling import generation as sampling
from lmsi.trainer import trainer as train


def _settings(**kw):
  defaults = {
      'sampling': sampling.SamplingConfig(),
      'finetune': train.TrainSettings(),
      'eval_before': evaluate.EvalConfig(),
      'eval_after': evaluate.EvalConfig(sampling=sampling.SamplingConfig(
          temperature=1.2)),
  }
  return paper.run_settings(**{**defaults, **kw})


def test_library_defaults_are_the_paper():
  assert set(_settings()) == set(paper.PAPER) == set(paper.WHERE)
  assert paper.deviations(_settings()) == {}


def test_each_departure_is_listed_with_both_values():
  dev = paper.deviations(_settings(
      sampling=sampling.SamplingConfig(num_samples=16),
      eval_after=evaluate.EvalConfig(), formats=('cot_fewshot',)))
  assert dev == {
      'num_samples': {'paper': 32, 'here': 16, 'where': '§3'},
      'eval_temperature_after': {'paper': 1.2, 'here': 0.7, 'where': '§4'},
      'formats': {'paper': list(paper.PAPER['formats']),
                  'here': ['cot_fewshot'], 'where': '§3.2, Table 2'}}


def test_unknown_setting_is_an_error():
  with pytest.raises(KeyError, match='not in lmsi.studies.paper.PAPER'):
    paper.deviations({'num_samples': 32, 'beam': 4})
