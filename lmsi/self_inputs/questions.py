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

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import random
from collections.abc import Sequence
from typing import Any

from lmsi.model import decoder as decoder_lib
from lmsi.self_inputs import exemplar_gen
from lmsi.runtime import manifests
from lmsi.checkpoints import load
from lmsi.data import prompts
from lmsi.self_inputs import question_filter
from lmsi.data import records
from lmsi.runtime import fileio
from lmsi.sampling import shard as sample_lib
from lmsi.sampling import generation as sampling
from lmsi.sampling import batched as stage
from lmsi.data import taskspec
from lmsi.vocab import base as vocab_base
from lmsi.voting import majority as voting

POOL_FILE = 'questions.jsonl'
MANIFEST_FILE = 'question_gen_manifest.json'
WARMUP_FORMAT = 'next_question'  # warmup_examples' SelfGenExample.format


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuestionGenConfig:
  """How questions are generated, filtered and answered.

  Paper §3.3 gives the method and (§5) 10 seed questions; the rest is
  [open] and recorded in the manifest. Near duplicates: difflib's
  `SequenceMatcher.ratio()` over lower-cased word lists (2 * matching words /
  total words), so word order counts and one changed number in a 10-word
  question still scores 0.9.
  """

  num_seed_questions: int = 10  # paper §5: 10 seed questions
  seeds_per_prompt: int = 4  # [open]
  num_prompts: int = 64  # [open]
  samples_per_prompt: int = 8  # [open]; lines generated = prompts x samples
  temperature: float = 0.7  # [open] the paper's sampling temperature (§3)
  top_k: int = 40  # [open] as sampling
  max_question_tokens: int = 64  # longer lines are malformed (cut off)
  separator: str = '\n\n'  # between prompt questions, as few-shot prompts
  near_duplicate_threshold: float = 0.9  # word-level difflib ratio >= this
  include_seeds: bool = False  # seeds themselves also enter the pool
  # Answering: m paths per question by few-shot CoT (paper §3: m = 32).
  answer_sampling: sampling.SamplingConfig = dataclasses.field(
      default_factory=sampling.SamplingConfig)
  min_vote_share: float = 0.5  # [open] "highly confident answer"
  seed: int = 0
  batch_questions: int = 64

  def __post_init__(self):
    if not 1 <= self.seeds_per_prompt <= self.num_seed_questions:
      raise ValueError(f'seeds_per_prompt must be in [1, num_seed_questions='
                       f'{self.num_seed_questions}], got '
                       f'{self.seeds_per_prompt}')
    if not 0.0 < self.near_duplicate_threshold <= 1.0:
      raise ValueError('near_duplicate_threshold must be in (0, 1], got '
                       f'{self.near_duplicate_threshold}')

  def question_sampling(self) -> sampling.SamplingConfig:
    """Sampling of new questions: one line each, stopped at its newline."""
    return sampling.SamplingConfig(
        num_samples=self.samples_per_prompt, temperature=self.temperature,
        top_k=self.top_k, max_decode_steps=self.max_question_tokens + 1,
        stop_strings=('\n',), seed=self.seed)

  def manifest(self) -> dict[str, Any]:
    """The settings as JSON values, with what each [open] choice is."""
    return {**dataclasses.asdict(self),
            'near_duplicate_measure': 'difflib.SequenceMatcher ratio over '
                                      'lower-cased words',
            'question_stop_strings': ['\n']}


def _prompt(questions: Sequence[str], separator: str) -> str:
  return ''.join(f'Q: {q}{separator}' for q in questions) + 'Q:'


def build_prompts(seed_questions: Sequence[str],
                  config: QuestionGenConfig) -> list[str]:
  """`num_prompts` prompts of `seeds_per_prompt` seeds in random order.

  Prompt p draws its seeds from random.Random(f'{seed}/{p}'), so prompts do
  not depend on how many are built.
  """
  out = []
  for p in range(config.num_prompts):
    rng = random.Random(f'lmsi-question-gen/{config.seed}/{p}')
    chosen = rng.sample(list(seed_questions), config.seeds_per_prompt)
    out.append(_prompt(chosen, config.separator))
  return out


def warmup_examples(questions: Sequence[records.Question],
                    config: QuestionGenConfig,
                    num_examples: int) -> list[records.SelfGenExample]:
  """Training examples of the question-writing prompt, for a model that
  cannot yet continue a list of questions (the demo base was pretrained
  with loss on answers only; the paper's PaLM needs none).

  Example i shows `seeds_per_prompt` of `questions` as `build_prompts` lays
  them out, and its target is one more of them, all drawn with
  random.Random(f'{seed}/{i}'). Pass questions the model was already
  trained on (the demo: its seed split), never the seeds, pool or test
  set; no answer enters.

  Raises:
    ValueError: if there are not more questions than `seeds_per_prompt`.
  """
  if len(questions) <= config.seeds_per_prompt:
    raise ValueError(f'a question-writing warm-up needs more than '
                     f'seeds_per_prompt={config.seeds_per_prompt} questions, '
                     f'got {len(questions)}')
  out = []
  for i in range(num_examples):
    rng = random.Random(f'lmsi-question-warmup/{config.seed}/{i}')
    *shown, target = rng.sample(list(questions), config.seeds_per_prompt + 1)
    out.append(records.SelfGenExample(
        task=target.task, id=target.id, sample=i, format=WARMUP_FORMAT,
        inputs=_prompt([s.question for s in shown], config.separator),
        targets=' ' + target.question, vote_share=1.0))
  return out


def generate_pool(
    *,
    model_config: decoder_lib.DecoderConfig,
    params: Any,
    vocab: vocab_base.Vocabulary,
    seed_questions: Sequence[records.Question],
    exemplars: Sequence[prompts.Exemplar],
    config: QuestionGenConfig,
    output_dir: str,
    answer_family: str = 'number',
    task: str,
    manifest_inputs: Sequence[str] = (),
    answer_params: Any = None,
) -> list[records.Question]:
  """Generates, filters and answers new questions; returns the kept pool.

  Args:
    model_config, params, vocab: the model that writes and answers.
    seed_questions: unlabeled seeds; the first `config.num_seed_questions`
      are used.
    exemplars: few-shot CoT exemplars for answering (hand-written or
      `lmsi.self_inputs.exemplar_gen`'s).
    config: see `QuestionGenConfig`.
    output_dir: where the files go (see the module docstring).
    answer_family: how answers are parsed (`lmsi.data.answers.Family`).
    task: the task name the pool's `records.Question`s carry.
    manifest_inputs: files the caller read (recorded with digests).
    answer_params: the answering model's parameters (default `params`): a
      model warmed up to write questions (`warmup_examples`) can leave the
      answering to the model it was warmed up from.

  Returns:
    The kept questions, as `output_dir/questions.jsonl` holds them.

  Raises:
    ValueError: if fewer than `config.num_seed_questions` seeds are given.
  """
  pool_path = os.path.join(output_dir, POOL_FILE)
  if fileio.is_complete(pool_path):
    return list(records.read_jsonl(pool_path, records.Question))
  seeds = list(seed_questions)[:config.num_seed_questions]
  if len(seeds) < config.num_seed_questions:
    raise ValueError(f'question generation needs num_seed_questions='
                     f'{config.num_seed_questions} seed questions, got '
                     f'{len(seeds)}')
  gen_path = os.path.join(output_dir, 'generated.jsonl')
  if not fileio.is_complete(gen_path):
    texts = build_prompts([s.question for s in seeds], config)
    out = stage.sample_prompts(
        model_config, params, texts, [f'qgen-{p}' for p in range(len(texts))],
        config.question_sampling(), vocab=vocab,
        batch_questions=config.batch_questions, desc='question gen')
    fileio.write_jsonl(gen_path, [
        question_filter.Generated(prompt=p, sample=s, text=text,
                                  logprob=round(lp, 4))
        for p, paths in enumerate(out) for s, (text, lp) in enumerate(paths)])
  generated = list(records.read_jsonl(gen_path, question_filter.Generated))
  candidates = question_filter.filter_candidates(
      generated, seeds, vocab, max_tokens=config.max_question_tokens,
      threshold=config.near_duplicate_threshold)
  to_answer = [records.Question(task=task, id=c.id, question=c.text)
               for c in candidates if c.status == 'new']
  if config.include_seeds:  # under their own ids, before the new ones
    if {s.id for s in seeds} & {c.id for c in candidates}:
      raise ValueError('a seed id collides with a generated id (gen-NNNNN)')
    to_answer = [records.Question(task=task, id=s.id, question=s.question)
                 for s in seeds] + to_answer
  votes: dict[str, voting.Vote] = {}
  if to_answer:
    shard = sample_lib.sample(
        model_config=model_config,
        params=params if answer_params is None else answer_params,
        questions=to_answer, output_dir=os.path.join(output_dir, 'answers'),
        sampling_config=config.answer_sampling, exemplars=exemplars,
        vocab=vocab, answer_family=answer_family,
        batch_questions=config.batch_questions)
    by_id = collections.defaultdict(list)
    for path in records.read_jsonl(shard, records.SampledPath):
      by_id[path.id].append(path.answer)
    votes = {q.id: voting.majority_vote(by_id[q.id]) for q in to_answer}

  kept_ids = {q for q, v in votes.items()
              if v.answer is not None and v.share >= config.min_vote_share}
  final = [c if c.status != 'new' else dataclasses.replace(
      c, status=(question_filter.KEPT if c.id in kept_ids
              else question_filter.LOW_CONFIDENCE),
      answer=votes[c.id].answer, vote_share=round(votes[c.id].share, 4))
           for c in candidates]
  pool = [q for q in to_answer if q.id in kept_ids]
  fileio.write_jsonl(os.path.join(output_dir, 'candidates.jsonl'), final)
  examples = [{'id': c.id, 'question': c.text, 'majority_answer': c.answer,
               'vote_share': c.vote_share}
              for c in final if c.status == question_filter.KEPT]
  sha = lambda t: hashlib.sha256(t.encode('utf-8')).hexdigest()
  manifest = manifests.stage_manifest(
      list(manifest_inputs), task=task, answer_family=answer_family,
      config=config.manifest(),
      counts={**question_filter.count(final), 'pool': len(pool),
              'seeds_kept': len(kept_ids & {s.id for s in seeds})},
      seeds=[{'task': s.task, 'id': s.id, 'sha256': sha(s.question)}
             for s in seeds],
      seeds_sha256=sha('\n'.join(s.question for s in seeds)),
      exemplars=[dataclasses.asdict(e) for e in exemplars],
      examples_kept=examples[:3])
  fileio.write_json(os.path.join(output_dir, MANIFEST_FILE), manifest)
  fileio.write_jsonl(pool_path, pool)  # last: its marker means finished
  return pool


def generate_pool_task(
    *,
    checkpoint_path: str,
    task_name: str,
    output_dir: str,
    config: QuestionGenConfig,
    split: str = 'train',
    pool_task: str | None = None,
    model_config: decoder_lib.DecoderConfig | None = None,
    vocabulary: str | None = None,
    exemplars: str | None = None,
    num_exemplars: int | None = None,
    exemplars_dir: str | None = None,
    answer_family: str | None = None,
    param_dtype: str = 'float32',
) -> list[records.Question]:
  """Binary body: a pool from the first seeds of a task split.

  The model is an artifact dir or an orbax dir (`lmsi.checkpoints.load_model`);
  the seeds are `split`'s first `config.num_seed_questions` questions (no gold);
  answers use the task's exemplars, or those `lmsi.self_inputs.exemplar_gen`
  wrote to `exemplars_dir`. The pool's questions carry `pool_task` (default
  `task_name`).
  """
  exemplars, answer_family = taskspec.arithmetic_defaults(
      task_name, exemplars, answer_family)
  loaded = load.load_model(checkpoint_path, model_config, vocabulary,
                           param_dtype)
  model_config, params, vocab = loaded.config, loaded.params, loaded.vocab
  inputs = list(loaded.inputs)
  family, exemplar_set, _ = taskspec.task_settings(
      task_name, exemplars=exemplars, num_exemplars=num_exemplars,
      answer_family=answer_family)
  if exemplars_dir:
    exemplar_set = exemplar_gen.read_exemplars(exemplars_dir)
    inputs.append(os.path.join(exemplars_dir, exemplar_gen.EXEMPLARS_FILE))
  seeds = taskspec.load_questions(task_name, split, config.num_seed_questions)
  return generate_pool(
      model_config=model_config, params=params, vocab=vocab,
      seed_questions=seeds, exemplars=exemplar_set, config=config,
      output_dir=output_dir, answer_family=family.value,
      task=pool_task or task_name, manifest_inputs=inputs)
