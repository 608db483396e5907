"""One driver for every study: arms over a `RunContext`.

A study compares arms that start from one base model with one budget:

  base       the base itself (evaluated with `eval_before`).
  LMSI r<k>  sample m paths per unlabeled question with round k-1's model
             (round 1: the base), vote, fine-tune on the kept paths in the
             four formats, from the base (or, `finetune_from='previous'`,
             from round k-1's model); evaluated with `eval_after`.
  control    fine-tuned on labeled data with the same budget.
  no-vote    fine-tuned on one random parseable path of round 1's samples
             per question.
  ablations  round 1 with some choices changed (`Ablation`: training
             formats, self-generated questions, self-generated exemplars).
  students   smaller models distilled from round 1's data (`Student`).

Each arm is a function of this module over a `RunContext`, which says how
the study samples, votes, fine-tunes and evaluates: in one process on the
demo's arithmetic task (`lmsi.studies.demo`), or through the stages'
library entries on any benchmark and checkpoint (`lmsi.studies.benchmark`).
`run_arms` runs the chosen arms in a fixed order and returns a
`results.StudyResult` per eval task. Every stage a context runs reads and
writes files and skips itself when complete, so a killed study resumes.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lmsi.data import prompts
from lmsi.evaluation import evaluator
from lmsi.model import decoder as decoder_lib
from lmsi.sampling import generation
from lmsi.self_inputs import exemplar_gen
from lmsi.self_inputs import questions as question_gen
from lmsi.studies import results
from lmsi.trainer import trainer
from lmsi.voting import aggregation

FINETUNE_FROM = ('base', 'previous')
LEARNERS = aggregation.LEARNERS  # 'sft' (the paper), 'preference' (ScPO)
QUESTIONS = ('unlabeled', 'generated')
EXEMPLARS = ('hand', 'self')
ByTask = dict[str, results.ArmResult]  # an arm's result on each eval task


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ablation:
  """An extra arm: LMSI round 1 from the base with some choices changed.

  It shares round 1's samples where it can, trains with the same budget as
  every arm and is reported under its name (metrics.json's `arms`).

  questions='generated' (paper §3.3): the pool is `lmsi.question_gen`'s,
  written by the model from the first `question_gen.num_seed_questions`
  unlabeled questions (answered by the base), instead of the real pool;
  `question_warmup` first fine-tunes a copy of the base that only writes
  them (`question_gen.warmup_examples` over the seed split's questions).
  exemplars='self' (paper §3.3): `lmsi.self_inputs.exemplar_gen`'s
  exemplars, from the base's zero-shot answers, replace the hand-written
  ones in sampling, training prompts and evaluation; the arm adds a '<name>
  base' row, the base evaluated with them. The run's seed replaces both
  configs' seeds. learner='preference' (ScPO, `lmsi.voting.preference`):
  round 1's samples and vote make preference pairs (vote margin at least
  `margin`) and the base is fine-tuned on them with the preference loss
  (`preference`: beta, alpha), the same steps and batch as every arm.
  """

  formats: tuple[str, ...] = prompts.FORMAT_NAMES  # paper Table 6 ablates
  learner: str = 'sft'
  margin: float = 0.0
  preference: trainer.PreferenceConfig | None = None
  # The arm's own fine-tuning budget (default: the study's), e.g. half the
  # batch in pairs, so that a preference step trains as many rows.
  finetune: trainer.TrainSettings | None = None
  questions: str = 'unlabeled'
  question_gen: question_gen.QuestionGenConfig | None = None
  question_warmup: trainer.TrainSettings | None = None
  num_warmup_examples: int = 2048
  exemplars: str = 'hand'
  exemplar_gen: exemplar_gen.ExemplarGenConfig | None = None

  def __post_init__(self):
    if self.questions not in QUESTIONS or self.exemplars not in EXEMPLARS:
      raise ValueError(f'Ablation: questions={self.questions!r} must be one '
                       f'of {QUESTIONS}, exemplars={self.exemplars!r} one of '
                       f'{EXEMPLARS}')
    if self.learner not in LEARNERS:
      raise ValueError(f'Ablation: learner={self.learner!r} must be one of '
                       f'{LEARNERS}')

  def resolved(self, seed: int,
               sampling_config: generation.SamplingConfig) -> Ablation:
    """This arm as run: missing generation configs default to the run's
    sampling (answers, exemplar votes), and the run's seed is theirs."""
    qgen, egen = self.question_gen, self.exemplar_gen
    if self.questions == 'generated':
      qgen = qgen or question_gen.QuestionGenConfig(
          answer_sampling=sampling_config)
      qgen = dataclasses.replace(qgen, seed=seed, answer_sampling=(
          dataclasses.replace(qgen.answer_sampling, seed=seed)))
    if self.exemplars == 'self':
      egen = egen or exemplar_gen.ExemplarGenConfig(sampling=sampling_config)
      egen = dataclasses.replace(egen, seed=seed, sampling=(
          dataclasses.replace(egen.sampling, seed=seed)))
    return dataclasses.replace(self, question_gen=qgen, exemplar_gen=egen)

  def manifest(self) -> dict[str, Any]:
    out = {'formats': list(aggregation.parse_formats(self.formats)),
           'questions': self.questions, 'exemplars': self.exemplars,
           'learner': self.learner}
    if self.finetune is not None:
      out['finetune'] = dataclasses.asdict(self.finetune)
    if self.learner == 'preference':
      out['margin'] = self.margin
      out['preference'] = dataclasses.asdict(
          self.preference or trainer.PreferenceConfig())
    if self.questions == 'generated':
      out['question_gen'] = self.question_gen.manifest()
      out['question_warmup'] = self.question_warmup and dataclasses.asdict(
          self.question_warmup)
      out['num_warmup_examples'] = self.num_warmup_examples
    if self.exemplars == 'self':
      out['exemplar_gen'] = self.exemplar_gen.manifest()
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Student:
  """Distillation (paper §5.3): a smaller model, pretrained as the base was
  (on the seed split, `base_train`), then fine-tuned with the teacher's
  fine-tuning budget on the teacher's round-1 self-generated data."""

  model_config: decoder_lib.DecoderConfig
  base_train: trainer.TrainSettings
  base_seed: int = 0  # fixed across study seeds, as the teacher's base is

  def manifest(self) -> dict[str, Any]:
    return {'model_config': dataclasses.asdict(self.model_config),
            'base_train': dataclasses.asdict(self.base_train),
            'base_seed': self.base_seed}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Arms:
  """Which arms a study runs (in `run_arms`' order: base, rounds,
  ablations, students, control, no-vote)."""

  num_rounds: int = 1
  finetune_from: str = 'base'
  run_control: bool = True
  run_no_vote: bool = True
  ablations: Mapping[str, Ablation] = dataclasses.field(default_factory=dict)
  students: Mapping[str, Student] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.finetune_from not in FINETUNE_FROM:
      raise ValueError(f'finetune_from={self.finetune_from!r}: expected one '
                       f'of {FINETUNE_FROM}')
    for name in [*self.ablations, *self.students]:
      if not re.fullmatch(r'[A-Za-z0-9_]+', name):
        raise ValueError(f'arm name {name!r}: use letters, digits and _ '
                         '(it names a directory and SeqIO tasks)')


@dataclasses.dataclass(frozen=True)
class Model:
  """A model an arm starts from or made: its orbax dir (`init` of the
  trainer), and its params where the study holds them in memory."""

  checkpoint: str
  params: Any = None
  config: decoder_lib.DecoderConfig | None = None


@dataclasses.dataclass(frozen=True)
class SelfGenerated:
  """An arm's training data: a self-generated file per dataset (`learner`
  'sft': selfgen.jsonl; 'preference': pairs.jsonl, trained with
  `preference`'s loss)."""

  files: dict[str, str]
  learner: str = 'sft'
  preference: trainer.PreferenceConfig | None = None


class RunContext(abc.ABC):
  """How a study runs its stages; the arms below call only these.

  Paths are relative to `output_dir`: an arm named 'r1' writes r1/samples,
  r1/selfgen, r1/model and r1/eval.
  """

  output_dir: str
  eval_tasks: Sequence[str]
  base: Model
  eval_before: evaluator.EvalConfig
  eval_after: evaluator.EvalConfig

  def path(self, *parts: str) -> str:
    return os.path.join(self.output_dir, *parts)

  @abc.abstractmethod
  def evaluate(self, arm: str, model: Model, config: evaluator.EvalConfig,
               *, kept: SelfGenerated | None = None,
               exemplars: Any = None) -> ByTask:
    """`model` on every eval task; `kept`: the data it was trained on."""

  @abc.abstractmethod
  def self_generate(self, arm: str, model: Model, *, no_vote: bool,
                    samples_dir: str, formats: Sequence[str] | None = None,
                    questions: Any = None,
                    exemplars: Any = None, learner: str = 'sft',
                    margin: float = 0.0) -> SelfGenerated:
    """Samples with `model` into `samples_dir` (skipped where complete) and
    votes (or, `no_vote`, picks one random path) into <arm>/selfgen
    (`learner` 'preference': the vote's pairs, margin >= `margin`).
    `formats`, `questions` and `exemplars` default to the study's."""

  @abc.abstractmethod
  def fit(self, arm: str, data: SelfGenerated, *, round_: int, suffix: str,
          init: Model, config: decoder_lib.DecoderConfig | None = None,
          settings: trainer.TrainSettings | None = None) -> Model | None:
    """Fine-tunes `init` on `data` into <arm>/model (with `settings`, else
    the study's budget); None if `data` holds no example (the arm is then
    reported as skipped)."""

  @abc.abstractmethod
  def train_control(self) -> Model | None:
    """The control arm's model: `base` fine-tuned on labeled data."""

  def self_exemplars(self, arm: str, ablation: Ablation) -> Any:
    raise NotImplementedError(f'{type(self).__name__}: no self-generated '
                              'exemplars (an Ablation with exemplars=self)')

  def generated_questions(self, arm: str, suffix: str, ablation: Ablation,
                          exemplars: Any) -> Any:
    raise NotImplementedError(f'{type(self).__name__}: no self-generated '
                              'questions (an Ablation with '
                              "questions='generated')")

  def pretrain_student(self, arm: str, student: Student) -> Model:
    raise NotImplementedError(f'{type(self).__name__}: no students')


def skipped(ctx: RunContext, why: str) -> ByTask:
  """The result of an arm that was not trained, on every eval task."""
  return {task: results.ArmResult(accuracy={}, num_questions=0, skipped=why)
          for task in ctx.eval_tasks}


def base_arm(ctx: RunContext) -> ByTask:
  """The base model, evaluated as before LMSI."""
  return ctx.evaluate('base', ctx.base, ctx.eval_before)


def lmsi_rounds(ctx: RunContext, num_rounds: int, finetune_from: str
                ) -> tuple[list[ByTask], SelfGenerated | None]:
  """LMSI rounds 1..num_rounds: (each round's result, round 1's data).

  Round k samples with round k-1's model and fine-tunes the base (or round
  k-1's model); a round whose vote kept no path ends the rounds.
  """
  out, first, model = [], None, ctx.base
  for r in range(1, num_rounds + 1):
    arm = f'r{r}'
    data = ctx.self_generate(arm, model, no_vote=False,
                             samples_dir=ctx.path(arm, 'samples'))
    first = first or data
    init = model if finetune_from == 'previous' else ctx.base
    trained = ctx.fit(arm, data, round_=r, suffix='', init=init)
    if trained is None:
      out.append(skipped(ctx, 'the vote kept no path'))
      break
    out.append(ctx.evaluate(arm, trained, ctx.eval_after, kept=data))
    model = trained
  return out, first


def round1_arm(ctx: RunContext, arm: str, suffix: str, *,
               ablation: Ablation | None = None, no_vote: bool = False
               ) -> dict[str, ByTask]:
  """Round 1 from the base with `ablation`'s changes (or, `no_vote`, one
  random path per question): {row name: result}.

  The base's paths are round 1's (same model, questions, exemplars and
  seed: r1/samples) unless the arm changes the questions or exemplars.
  """
  formats = None if ablation is None else ablation.formats
  ablation = ablation or Ablation()
  key, rows = os.path.basename(arm), {}
  exemplars = questions = None
  if ablation.exemplars == 'self':
    exemplars = ctx.self_exemplars(arm, ablation)
    rows[f'{key} base'] = ctx.evaluate(f'{arm}/base', ctx.base,
                                       ctx.eval_before, exemplars=exemplars)
  if ablation.questions == 'generated':
    questions = ctx.generated_questions(arm, suffix, ablation, exemplars)
  shared = questions is None and exemplars is None
  data = ctx.self_generate(
      arm, ctx.base, no_vote=no_vote,
      samples_dir=ctx.path('r1' if shared else arm, 'samples'),
      formats=formats, questions=questions, exemplars=exemplars,
      **({'learner': ablation.learner, 'margin': ablation.margin}
         if ablation.learner != 'sft' else {}))
  if ablation.learner != 'sft':
    data = dataclasses.replace(data, preference=ablation.preference)
  model = ctx.fit(arm, data, round_=1, suffix=suffix, init=ctx.base,
                  **({'settings': ablation.finetune} if ablation.finetune
                     else {}))
  rows[key] = (ctx.evaluate(arm, model, ctx.eval_after, kept=data,
                            exemplars=exemplars) if model is not None
               else skipped(ctx, 'no parseable path' if no_vote else
                            'no pair passed the margin'
                            if ablation.learner == 'preference'
                            else 'the vote kept no path'))
  return rows


def control_arm(ctx: RunContext) -> ByTask:
  """The base fine-tuned on labeled data with the same budget."""
  model = ctx.train_control()
  if model is None:
    return skipped(ctx, 'no gold examples')
  return ctx.evaluate('control', model, ctx.eval_after)


def student_arm(ctx: RunContext, name: str, student: Student,
                round1: SelfGenerated) -> dict[str, ByTask]:
  """A student pretrained as the base was, then fine-tuned on round 1's
  data: {'before': result, 'after': result}."""
  arm = f'students/{name}'
  base = ctx.pretrain_student(arm, student)
  after = ctx.fit(arm, round1, round_=1, suffix='', init=base,
                  config=student.model_config)
  return {'before': ctx.evaluate(f'{arm}/base', base, ctx.eval_before),
          'after': ctx.evaluate(arm, after, ctx.eval_after)}


def run_arms(ctx: RunContext, arms: Arms) -> dict[str, results.StudyResult]:
  """Runs `arms` in order (base, rounds, ablations, students, control,
  no-vote) and returns each eval task's `StudyResult`."""
  base = base_arm(ctx)
  rounds, round1 = lmsi_rounds(ctx, arms.num_rounds, arms.finetune_from)
  rounds = [base] + rounds
  extra: dict[str, ByTask] = {}
  for name, ablation in arms.ablations.items():
    extra.update(round1_arm(ctx, f'arms/{name}', f'_{name}',
                            ablation=ablation))
  students = {name: student_arm(ctx, name, student, round1)
              for name, student in arms.students.items()}
  control = control_arm(ctx) if arms.run_control else None
  no_vote = (round1_arm(ctx, 'no_vote', '_novote', no_vote=True)['no_vote']
             if arms.run_no_vote else None)
  return {task: results.StudyResult(
      rounds=tuple(r[task].with_round(i) for i, r in enumerate(rounds)),
      control=control and control[task], no_vote=no_vote and no_vote[task],
      arms={row: by_task[task] for row, by_task in extra.items()},
      students={name: results.StudentResult(before=s['before'][task],
                                            after=s['after'][task])
                for name, s in students.items()})
          for task in ctx.eval_tasks}
