"""Binary: the LMSI study for any pool task and any model (stages 3-7).

The paper's main table (one model per task) and its multi-task and
out-of-domain studies (a pool mixture; held-out eval tasks), for any
imported checkpoint. Arms, all fine-tuned from the checkpoint with one
budget and evaluated on every eval task:

  base     the checkpoint itself (evaluation T 0.7).
  LMSI r1  sample m paths per pool question, vote, fine-tune on the kept
           paths in the four formats (round k samples with round k-1's
           model); evaluation T 1.2, as every fine-tuned arm.
  control  fine-tuned on the gold labels of the same pool questions, in the
           two direct formats: the release rows hold no gold rationale.
  no-vote  fine-tuned on one random parseable path per question.

Each stage is the library entry point its binary runs (`sample.sample_task`,
`aggregate.aggregate_task`, `train.train`, `evaluate.evaluate_task`), called
in this one process with the settings of its gin run file (the macros of
gin/runs/study.gin are theirs): JAX and the task registry start once, and
every stage still reads and writes files and skips itself when complete,
so a killed study resumes. Layout under `output_dir`:

  r<k>/samples[/<pool>]  r<k>/selfgen[/<pool>]  r<k>/model  r<k>/eval/<task>
  control/gold/<pool>.jsonl  control/model  control/eval/<task>
  no_vote/selfgen  no_vote/model  no_vote/eval/<task>   base/eval/<task>
  metrics.json + report.md (one eval task), or <task>/metrics.json +
  <task>/report.md per eval task with summary.json + report.md on top;
  manifest.json, timings.json, config.gin.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `study.<name>` (`from lmsi import study`).
from lmsi.studies.benchmark import StudyArms, StudyTasks, run_study  # pylint: disable=unused-import

__all__ = ['StudyArms', 'StudyTasks', 'run_study']

if __name__ == '__main__':
  gin_flags.main('lmsi.study', 'run_study', output_dir_arg='output_dir')
