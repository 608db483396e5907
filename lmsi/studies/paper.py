"""The paper's settings, and how a run departs from them.

Huang et al. 2022 (arXiv 2210.11610) fix most of a run: m = 32 paths at
T 0.7 with top-k 40 and <= 256 steps (§3, §4), all four training formats
(§3.2), no vote threshold, fine-tuning for 10k steps at lr 5e-5 with batch
32 (§4; the optimizer is [open], Adafactor here), and self-consistency at
T 0.7 before LMSI and 1.2 after (§4). A study binary describes what it ran
as a flat dict of these names (`run_settings`); `deviations` lists every
entry that differs from the paper, so each run's manifest says plainly
where it is not the paper (the demo's CPU budget, an ablation's switch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmsi.data import prompts

# The paper's value of each setting a run reports (`run_settings`).
PAPER: dict[str, Any] = {
    'num_samples': 32,
    'temperature': 0.7,
    'top_k': 40,
    'max_decode_steps': 256,
    'formats': list(prompts.FORMAT_NAMES),
    'min_vote_share': 0.0,
    'mix_seed_data': False,
    'finetune_steps': 10_000,
    'finetune_batch_size': 32,
    'finetune_learning_rate': 5e-5,
    'finetune_optimizer': 'adafactor',
    'finetune_schedule': 'constant',
    'eval_temperature_before': 0.7,
    'eval_temperature_after': 1.2,
    'eval_num_samples': 32,
}

# Paper section for each setting, for the manifest's readers.
WHERE = {
    'num_samples': '§3', 'temperature': '§3', 'top_k': '[open], Wang et al.',
    'max_decode_steps': '§4', 'formats': '§3.2, Table 2',
    'min_vote_share': '§3 (no threshold)', 'mix_seed_data': '§3',
    'finetune_steps': '§4', 'finetune_batch_size': '§4',
    'finetune_learning_rate': '§4', 'finetune_optimizer': '[open]',
    'finetune_schedule': '[open]', 'eval_temperature_before': '§4',
    'eval_temperature_after': '§4', 'eval_num_samples': '§4',
}


def run_settings(*, sampling: Any, finetune: Any, eval_before: Any,
                 eval_after: Any, formats: Sequence[str] = prompts.FORMAT_NAMES,
                 min_vote_share: float = 0.0,
                 mix_seed_data: bool = False) -> dict[str, Any]:
  """The run's value of every `PAPER` setting.

  Args:
    sampling: the self-generation `sampling.SamplingConfig`.
    finetune: the fine-tuning `train.TrainSettings`.
    eval_before, eval_after: the `evaluate.EvalConfig`s of the base and of
      the fine-tuned models.
    formats, min_vote_share, mix_seed_data: the aggregation choices.
  """
  return {
      'num_samples': sampling.num_samples,
      'temperature': sampling.temperature,
      'top_k': sampling.top_k,
      'max_decode_steps': sampling.max_decode_steps,
      'formats': list(formats),
      'min_vote_share': min_vote_share,
      'mix_seed_data': mix_seed_data,
      'finetune_steps': finetune.steps,
      'finetune_batch_size': finetune.batch_size,
      'finetune_learning_rate': finetune.learning_rate,
      'finetune_optimizer': finetune.optimizer,
      'finetune_schedule': finetune.schedule,
      'eval_temperature_before': eval_before.sampling.temperature,
      'eval_temperature_after': eval_after.sampling.temperature,
      'eval_num_samples': eval_after.sampling.num_samples,
  }


def deviations(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """{setting: {'paper', 'here', 'where'}} for each setting that differs.

  Raises:
    KeyError: for a setting the paper table does not know.
  """
  unknown = sorted(set(settings) - set(PAPER))
  if unknown:
    raise KeyError(f'settings {unknown} are not in lmsi.studies.paper.PAPER')
  out = {}
  for key, value in settings.items():
    paper = PAPER[key]
    same = (value == paper if not isinstance(paper, float)
            else abs(float(value) - paper) <= 1e-12 * max(1.0, abs(paper)))
    if not same:
      out[key] = {'paper': paper, 'here': value, 'where': WHERE[key]}
  return out
