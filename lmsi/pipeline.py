"""Binary: one or more LMSI rounds end to end, with control and ablation.

Stages talk through files under `output_dir`, so a killed run resumes:
  data/            the embedded arithmetic task (seed, seed_dev, unlabeled,
                   test); seed is EASIER than unlabeled/test.
  base/            a weak base model trained on the labeled seed split until
                   its held-out (seed_dev) greedy-CoT accuracy plateaus.
  r<k>/samples     m CoT paths per unlabeled question from the previous model.
  r<k>/selfgen     majority-vote-filtered paths in the four formats.
  r<k>/model       the base (or, with finetune_from='previous', round
                   k-1's model) fine-tuned on the round's mixture.
  control/model    the base fine-tuned on the seed split only, same budget.
  no_vote/...      the base fine-tuned on one random path per question.
  arms/<name>/...  an `Ablation`: round 1 with some choices changed (which
                   formats become training data, questions written by the
                   model from 10 seeds, exemplars from its zero-shot
                   answers), same budget.
  */eval           direct, greedy CoT, maj@k and calibration on test.
  metrics.json, report.md, *.png, config.gin, manifest.json (with every
  setting that departs from the paper, `lmsi.studies.paper.deviations`).
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `pipeline.<name>` (`from lmsi import pipeline`).
from lmsi.studies.demo import Ablation, Student, run_pipeline  # pylint: disable=unused-import

__all__ = ['Ablation', 'Student', 'run_pipeline']

if __name__ == '__main__':
  gin_flags.main('lmsi.pipeline', 'run_pipeline', output_dir_arg='output_dir')
