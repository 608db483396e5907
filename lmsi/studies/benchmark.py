"""The LMSI study for any pool task and any model (stages 3-7).

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

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from lmsi.voting import aggregation as aggregate_lib
from lmsi.data import answers as answers_lib
from lmsi.model import decoder as decoder_lib
from lmsi.evaluation import evaluator as evaluate_lib
from lmsi.data import inputs
from lmsi.runtime import manifests
from lmsi.data import prompts
from lmsi.data import records
from lmsi.runtime import fileio
from lmsi.studies import common
from lmsi.studies import report
from lmsi.studies import results
from lmsi.sampling import shard as sample_lib
from lmsi.sampling import generation as sampling
from lmsi.checkpoints import load
from lmsi.data import taskspec
from lmsi.trainer import trainer as train_lib

# The control's formats: a gold label without a rationale has no CoT target.
GOLD_FORMATS = (prompts.Format.DIRECT_FEWSHOT, prompts.Format.DIRECT_ZEROSHOT)
POOL_SPLIT = 'train'  # pool tasks serve their questions as 'train'


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudyTasks:
  """What the study samples, and what it evaluates on.

  `pool_task` is a pool task (`lmsi_gsm8k_pool_v1`) or a mixture of pools
  (`lmsi_multitask_pool_v1`: one multi-task model, as the paper's
  out-of-domain study). `eval_tasks` () means each pool's own benchmark.
  `max_questions` caps each pool (and so the control's gold questions),
  `max_eval_questions` each eval split. `exemplars`, `num_exemplars` and
  `answer_family` override every task's own (`taskspec.task_settings`).
  """

  pool_task: str
  eval_tasks: tuple[str, ...] = ()
  eval_split: str = 'test'
  max_questions: int | None = None
  max_eval_questions: int | None = None
  exemplars: str | None = None
  num_exemplars: int | None = None
  answer_family: str | None = None

  def settings(self) -> dict[str, Any]:
    return dict(exemplars=self.exemplars, num_exemplars=self.num_exemplars,
                answer_family=self.answer_family)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudyArms:
  """Which arms run, and the vote's knobs (paper: none of them on)."""

  num_rounds: int = 1
  run_control: bool = True
  run_no_vote: bool = True
  min_vote_share: float = 0.0
  max_paths_per_question: int | None = None
  dedup: bool = False


def benchmark_of(pool: str) -> tuple[str, str]:
  """(benchmark task, split) whose questions the pool task serves.

  Raises:
    ValueError: if `pool` is not a registered pool of a benchmark.
  """
  spec = taskspec.SPECS.get(pool)
  if spec is None or spec.pool_of is None:
    raise ValueError(f'{pool!r} is not a benchmark pool task (e.g. '
                     "'lmsi_gsm8k_pool_v1'): set EVAL_TASKS, and RUN_CONTROL "
                     '= False (its gold labels are unknown)')
  return spec.pool_of


def dataset_of(task: str) -> str:
  """The dataset part of self-generated task names ('gsm8k', 'anli_r2')."""
  spec = taskspec.SPECS.get(task)
  return spec.dataset if spec else task


def gold_examples(task: str, split: str, *, max_questions: int | None,
                  settings: Mapping[str, Any]) -> list[records.SelfGenExample]:
  """The control's training rows: `split`'s first questions with their gold
  label as the direct target ("The answer is (b)."), in `GOLD_FORMATS`."""
  family, exemplar_set, _, examples = taskspec.load_task(
      task, split, max_questions=max_questions, **settings)
  return [records.SelfGenExample(
      task=task, id=e['id'], sample=0, format=fmt.value,
      inputs=prompts.render(fmt, e['question'], exemplar_set),
      targets=prompts.target(fmt, '', answers_lib.answer_text(e['answer'],
                                                              family)),
      vote_share=1.0) for e in examples for fmt in GOLD_FORMATS]


def has_examples(path: str) -> bool:
  return next(iter(records.read_jsonl(path, records.SelfGenExample)),
              None) is not None


def _counts(selfgen_path: str) -> dict[str, Any] | None:
  path = os.path.join(os.path.dirname(selfgen_path), 'aggregate_manifest.json')
  if not os.path.exists(path):
    return None
  with open(path, encoding='utf-8') as f:
    return json.load(f).get('counts')


class BenchmarkContext(common.RunContext):
  """The stages' library entries (`sample_task`, `aggregate_task`,
  `train_with`, `evaluate_task`) in this one process, on checkpoint dirs:
  JAX and the task registry start once, and every stage still reads and
  writes files and skips itself when complete."""

  def __init__(self, output_dir: str, *, model_config, checkpoint_path: str,
               vocabulary: str, tasks: StudyTasks, arms: StudyArms,
               sampling_config: sampling.SamplingConfig,
               finetune: train_lib.TrainSettings,
               task_feature_lengths: Mapping[str, int],
               eval_before: evaluate_lib.EvalConfig,
               eval_after: evaluate_lib.EvalConfig, seed: int,
               batch_questions: int, param_dtype: str, grad_accum_steps: int):
    self.output_dir = output_dir
    self.model_config, self.vocabulary = model_config, vocabulary
    self.tasks, self.arms = tasks, arms
    self.sampling_config, self.finetune = sampling_config, finetune
    self.task_feature_lengths = task_feature_lengths
    self.eval_before, self.eval_after = eval_before, eval_after
    self.seed, self.batch_questions = seed, batch_questions
    self.param_dtype, self.grad_accum_steps = param_dtype, grad_accum_steps
    self.base = common.Model(checkpoint_path)
    self.register_selfgen = taskspec.builder(taskspec.SELFGEN).register
    self.pools = inputs.member_tasks(tasks.pool_task)
    self.eval_tasks = (list(tasks.eval_tasks)
                       or [benchmark_of(p)[0] for p in self.pools])
    for name in self.eval_tasks:
      inputs.get_mixture_or_task(name)  # an unknown name fails before work
    self.settings = tasks.settings()
    self.timings: dict[str, float] = {}
    self.files: dict[str, dict[str, str]] = {}  # arm -> dataset -> file

  def _timed(self, key, fn, **kwargs):
    t0 = time.monotonic()
    out = fn(**kwargs)
    self.timings[key] = round(time.monotonic() - t0, 1)
    return out

  def evaluate(self, arm, model, config, *, kept=None, exemplars=None):
    del kept  # no reasoning styles outside the demo
    if exemplars is not None:
      raise NotImplementedError('the study evaluates with each task\'s '
                                'exemplars (StudyTasks.exemplars)')
    return {task: results.ArmResult.from_json(self._timed(
        f'eval {arm} {task}', evaluate_lib.evaluate_task,
        model_config=self.model_config, checkpoint_path=model.checkpoint,
        task_name=task, split=self.tasks.eval_split,
        output_dir=self.path(arm, 'eval', task),
        config=config.with_seed(self.seed), vocabulary=self.vocabulary,
        max_questions=self.tasks.max_eval_questions,
        param_dtype=self.param_dtype, **self.settings))
            for task in self.eval_tasks}

  def self_generate(self, arm, model, *, no_vote, samples_dir, formats=None,
                    questions=None, exemplars=None, learner='sft',
                    margin=0.0):
    if learner != 'sft':
      raise NotImplementedError(
          f'learner={learner!r}: the benchmark study fine-tunes with the '
          "paper's learner only so far; the preference learner runs in the "
          'demo study (gin/experiments/learners.gin) and through the stage '
          'binaries (gin/runs/finetune_preference.gin)')
    if formats is not None or questions is not None or exemplars is not None:
      raise NotImplementedError('the study samples its pool with the '
                                "tasks' exemplars into the four formats")
    self._timed(
        f'sample {arm}', sample_lib.sample_task,
        model_config=self.model_config, checkpoint_path=model.checkpoint,
        task_name=self.tasks.pool_task, split=POOL_SPLIT,
        output_dir=samples_dir,
        sampling_config=dataclasses.replace(self.sampling_config,
                                            seed=self.seed),
        vocabulary=self.vocabulary, max_questions=self.tasks.max_questions,
        batch_questions=self.batch_questions, param_dtype=self.param_dtype,
        **self.settings)
    paths = self._timed(
        f'aggregate {arm}', aggregate_lib.aggregate_task,
        samples_dir=samples_dir, task_name=self.tasks.pool_task,
        split=POOL_SPLIT, output_dir=self.path(arm, 'selfgen'),
        no_vote=no_vote, seed=self.seed,
        min_vote_share=self.arms.min_vote_share,
        max_paths_per_question=self.arms.max_paths_per_question,
        dedup=self.arms.dedup, **self.settings)
    self.files[arm] = {dataset_of(p): path
                       for p, path in zip(self.pools, paths)}
    return common.SelfGenerated(self.files[arm])

  def fit(self, arm, data, *, round_, suffix, init, config=None,
          settings=None):
    """Registers the arm's mixture over the files and fine-tunes on it
    (with `settings`, else the study's budget); None if no file holds an
    example."""
    if config is not None:
      raise NotImplementedError('the study fine-tunes its one model')
    mixture, names = None, []
    for dataset, path in sorted(data.files.items()):
      if has_examples(path):  # each dataset's tasks join the last mixture
        mixture = self.register_selfgen(path, dataset, round_,
                                        vocabulary=self.vocabulary,
                                        extra_tasks=names, suffix=suffix)
        names = inputs.member_tasks(mixture)
    if mixture is None:
      logging.warning('study: %s has no training examples; not fine-tuned',
                      arm)
      return None
    self._timed(f'train {arm}', train_lib.train_with,
                settings=settings or self.finetune,
                model_config=self.model_config, mixture_or_task_name=mixture,
                task_feature_lengths=self.task_feature_lengths,
                model_dir=self.path(arm, 'model'),
                initial_checkpoint_path=init.checkpoint, seed=self.seed,
                grad_accum_steps=self.grad_accum_steps)
    return common.Model(self.path(arm, 'model'))

  def train_control(self):
    """The checkpoint fine-tuned on the gold labels of the pool questions
    (`gold_examples`), with the same budget."""
    files = self.files['control'] = {}
    for pool in self.pools:
      task, split = benchmark_of(pool)
      path = self.path('control', 'gold', f'{pool}.jsonl')
      if not fileio.is_complete(path):
        fileio.write_jsonl(path, gold_examples(
            task, split, max_questions=self.tasks.max_questions,
            settings=self.settings))
      files[dataset_of(pool)] = path
    return self.fit('control', common.SelfGenerated(files), round_=1,
                    suffix='_control', init=self.base)


def run_study(
    *,
    output_dir: str,
    model_config: decoder_lib.DecoderConfig,
    checkpoint_path: str,
    vocabulary: str,
    tasks: StudyTasks,
    arms: StudyArms,
    sampling_config: sampling.SamplingConfig,
    finetune: train_lib.TrainSettings,
    task_feature_lengths: Mapping[str, int],
    eval_before: evaluate_lib.EvalConfig,
    eval_after: evaluate_lib.EvalConfig,
    seed: int = 0,
    batch_questions: int = 64,
    param_dtype: str = 'float32',
    grad_accum_steps: int = 1,
    title: str = 'LMSI study',
) -> dict[str, dict]:
  """Runs every arm; returns {eval task: metrics.json's content} (written).

  The tasks must be registered (gin: `@mixtures.registered()`) and the
  selfgen builder too (`import tasks.selfgen`). An arm whose vote keeps no
  path is not fine-tuned: its result says why (`skipped`) and the table
  shows '-'.

  Raises:
    ValueError: for an unknown eval task, or a pool without gold labels
      when `arms.run_control` (see `benchmark_of`).
  """
  t_start = time.monotonic()
  fileio.makedirs(output_dir)
  ctx = BenchmarkContext(
      output_dir, model_config=model_config, checkpoint_path=checkpoint_path,
      vocabulary=vocabulary, tasks=tasks, arms=arms,
      sampling_config=sampling_config, finetune=finetune,
      task_feature_lengths=task_feature_lengths, eval_before=eval_before,
      eval_after=eval_after, seed=seed, batch_questions=batch_questions,
      param_dtype=param_dtype, grad_accum_steps=grad_accum_steps)
  studies = common.run_arms(ctx, common.Arms(
      num_rounds=arms.num_rounds, run_control=arms.run_control,
      run_no_vote=arms.run_no_vote))
  _write_results(output_dir, studies, title)
  ctx.timings['total'] = round(time.monotonic() - t_start, 1)
  fileio.write_json(os.path.join(output_dir, 'timings.json'), ctx.timings)
  fileio.write_json(os.path.join(output_dir, 'manifest.json'), _manifest(
      checkpoint_path, vocabulary, ctx.files, studies,
      model_config=model_config, pools=ctx.pools, eval_tasks=ctx.eval_tasks,
      tasks=tasks, arms=arms, sampling_config=sampling_config,
      finetune=finetune, task_feature_lengths=task_feature_lengths,
      eval_before=eval_before, eval_after=eval_after, seed=seed,
      param_dtype=param_dtype, grad_accum_steps=grad_accum_steps))
  for task, study in studies.items():
    print(f'{task} ({tasks.eval_split}):\n{report.format_table(study)}')
  return {task: study.to_json() for task, study in studies.items()}


def _write_results(output_dir: str,
                   studies: Mapping[str, results.StudyResult],
                   title: str) -> None:
  """metrics.json + report.md at the top for one eval task; else one pair
  per task under <task>/, with summary.json and an index report.md."""
  if len(studies) == 1:
    (task, m), = studies.items()
    fileio.write_json(os.path.join(output_dir, 'metrics.json'), m.to_json())
    report.write_report(m, output_dir, title=f'{title}: {task}')
    return
  parts = [f'# {title}', '']
  for task, m in studies.items():
    fileio.write_json(os.path.join(output_dir, task, 'metrics.json'),
                      m.to_json())
    report.write_report(m, os.path.join(output_dir, task),
                        title=f'{title}: {task}')
    parts += [f'## {task} ([report]({task}/report.md))', '',
              report.format_markdown_table(m), '', 'Self-consistency gap '
              '(points):', '', report.format_gap_markdown(m), '']
  fileio.write_json(os.path.join(output_dir, 'summary.json'),
                    {task: m.to_json() for task, m in studies.items()})
  fileio.write_text_atomic(os.path.join(output_dir, 'report.md'),
                            '\n'.join(parts))


def _manifest(checkpoint_path: str, vocabulary: str,
              files: Mapping[str, Mapping[str, str]],
              studies: Mapping[str, results.StudyResult], *,
              model_config: decoder_lib.DecoderConfig, pools: Sequence[str],
              eval_tasks: Sequence[str], tasks: StudyTasks, arms: StudyArms,
              **settings: Any) -> dict[str, Any]:
  """The study's manifest: inputs (checkpoint, tokenizer, every training
  file) with digests, git revision, gin config, counts and choices."""
  used = {arm: {k: p for k, p in f.items() if fileio.is_complete(p)}
          for arm, f in files.items()}
  as_dict = lambda v: (dataclasses.asdict(v) if dataclasses.is_dataclass(v)
                       else v)
  return manifests.stage_manifest(
      load.orbax_inputs(checkpoint_path, vocabulary)
      + [p for f in used.values() for p in f.values()],
      checkpoint=os.path.abspath(checkpoint_path), vocabulary=vocabulary,
      model_config=dataclasses.asdict(model_config),
      pools=list(pools), eval_tasks=list(eval_tasks),
      tasks=dataclasses.asdict(tasks), arms=dataclasses.asdict(arms),
      settings={k: as_dict(v) for k, v in settings.items()},
      counts={
          'selfgen': {arm: {k: _counts(p) for k, p in f.items()}
                      for arm, f in used.items() if arm != 'control'},
          'gold_examples': {k: sum(1 for _ in records.read_jsonl(
              p, records.SelfGenExample))
                            for k, p in used.get('control', {}).items()},
          'eval_questions': {t: m.rounds[0].num_questions
                             for t, m in studies.items()}},
      choices={
          'finetune_from': 'the checkpoint, every arm and round',
          'round_k_samples_with': 'round k-1 model (round 1: the checkpoint)',
          'control': 'gold labels of the pool questions (the split each '
                     'pool serves), direct formats only: release rows hold '
                     'no gold rationale',
          'no_vote': "one random parseable path per question of round 1's "
                     'samples',
          'eval_temperature': {'base': settings['eval_before'].sampling
                               .temperature,
                               'fine-tuned arms': settings['eval_after']
                               .sampling.temperature},
          'empty_training_data': 'arm not fine-tuned; result has `skipped`',
          'mixing_rates': 'equal per (dataset, format) task',
          'top_k': settings['sampling_config'].top_k,
          'stop_strings': list(settings['sampling_config'].stop_strings),
      })
