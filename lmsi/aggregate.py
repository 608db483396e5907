"""Binary: vote over sampled paths and write self-generated data (stage 4-5).

Paper §3: the majority answer ỹ of a question's m paths is its pseudo-label
and EVERY path reaching ỹ is kept (no threshold, cap or de-duplication by
default; those are knobs). Each kept path becomes four training examples,
one per `prompts.Format`. Gold answers are never read here: a
`SelfGenExample` has no gold field.

`no_vote=True` is the ablation: one random parseable path per question,
no majority filter.

`python -m lmsi.aggregate --gin_file=gin/runs/aggregate.gin --gin.TASK=...`
runs `aggregate_task` over what `lmsi.sample`'s binary wrote.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `aggregate.<name>` (`from lmsi import aggregate`).
from lmsi.voting.aggregation import aggregate_task  # pylint: disable=unused-import

__all__ = ['aggregate_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.aggregate', 'aggregate_task', output_dir_arg='output_dir')
