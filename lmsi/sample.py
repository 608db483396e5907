"""Binary: sample reasoning paths for unlabeled questions (LMSI stage 3).

Reads only `id` and `question` of a task split (gold answers never enter),
renders the few-shot CoT prompt, samples m paths per question and writes
`samples-SSSSS-of-NNNNN.jsonl` (`SampledPath` records) atomically with a
`.COMPLETED` marker. A restarted job skips finished shards.

`python -m lmsi.sample --gin_file=<model>.gin --gin_file=gin/runs/sample.gin
--gin.TASK=...` runs `sample_task`: a benchmark task, pool or mixture by
name, each member task with its own answer family and exemplars.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `sample.<name>` (`from lmsi import sample`).
from lmsi.sampling.shard import sample_task  # pylint: disable=unused-import

__all__ = ['sample_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.sample', 'sample_task', output_dir_arg='output_dir')
