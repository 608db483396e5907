"""Self-generated questions: an unlabeled pool from a few seeds (paper §3.3).

The low-resource setting of the paper: only a handful of unlabeled seed
questions (10 on GSM8K) exist. `generate_pool` builds prompts of
`seeds_per_prompt` seed questions in a random order, "Q: s1<sep>Q: s2<sep>
...Q:", samples the model's next line as a new question, drops malformed
lines (`malformed_reason`), exact and near duplicates (of a seed or of an
earlier new question), answers the rest by self-consistency (few-shot CoT,
m paths, `lmsi.sample` + `lmsi.voting`) and keeps those whose majority vote
share reaches `min_vote_share` (the paper keeps "the questions that have a
highly confident answer"). The kept questions are written as a pool,
`questions.jsonl` of `records.Question`, which stages 3-7 read as they read
a real one; their majority answers are never written into it.

Only `records.Question`s (no gold field) enter, so no gold answer can.
Writes, under `output_dir`: generated.jsonl (every sampled line),
answers/ (the answer paths), candidates.jsonl (each line's fate),
questions.jsonl and question_gen_manifest.json. A finished directory is read
back, not redone; an interrupted one resumes from its finished files.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `question_gen.<name>` (`from lmsi import question_gen`).
from lmsi.self_inputs.questions import QuestionGenConfig, generate_pool_task  # pylint: disable=unused-import

__all__ = ['QuestionGenConfig', 'generate_pool_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.question_gen', 'generate_pool_task', output_dir_arg='output_dir')
