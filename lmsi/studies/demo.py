"""The demo study: LMSI rounds, control and ablations on the arithmetic task.

`run_pipeline` (what `python -m lmsi.pipeline` runs) builds a `DemoContext`
(every stage in this process, models held in memory) and runs the arms of
`lmsi.studies.common` over it.

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

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from lmsi.checkpoints import artifact
from lmsi.checkpoints import store as checkpoints
from lmsi.data import exemplars as exemplars_lib
from lmsi.data import inputs
from lmsi.data import prompts
from lmsi.data import records
from lmsi.data import taskspec
from lmsi.demo import arithmetic
from lmsi.demo import base as demo_base
from lmsi.demo import styles
from lmsi.evaluation import evaluator
from lmsi.model import decoder as decoder_lib
from lmsi.runtime import fileio
from lmsi.runtime import manifests
from lmsi.sampling import generation as sampling
from lmsi.sampling import shard as sample_lib
from lmsi.self_inputs import exemplar_gen
from lmsi.self_inputs import questions as question_gen
from lmsi.studies import common
from lmsi.studies import paper
from lmsi.studies import report
from lmsi.studies import results
from lmsi.studies.common import Ablation, Student  # gin: pipeline.Ablation
from lmsi.trainer import trainer as train_lib
from lmsi.voting import aggregation as aggregate_lib
from lmsi.vocab import simple as vocab_lib

TASK = 'arith'  # the demo's one eval task
# What an arm's result keeps of an evaluation (metrics.json).
KEPT_KEYS = ('accuracy', 'calibration', 'num_questions', 'temperature',
             'sweep', 'sweep_best')


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoSettings:
  """What every arm of the demo shares besides its model."""

  model_config: decoder_lib.DecoderConfig
  seed: int
  finetune: train_lib.TrainSettings
  sampling_config: sampling.SamplingConfig  # the run's seed set
  eval_before: evaluator.EvalConfig
  eval_after: evaluator.EvalConfig
  task_feature_lengths: Mapping[str, int]
  formats: tuple[str, ...]
  min_vote_share: float
  mix_seed_data: bool
  sample_shards: int
  base_plateau: train_lib.Plateau | None


class DemoContext(common.RunContext):
  """The demo's stages in this process, on its arithmetic splits."""

  def __init__(self, output_dir: str, settings: DemoSettings,
               data: arithmetic.DataConfig, base: common.Model):
    self.output_dir = output_dir
    self.settings = settings
    self.eval_tasks = (TASK,)
    self.eval_before, self.eval_after = (settings.eval_before,
                                         settings.eval_after)
    self.data = data
    self.base = base
    self.timings: dict[str, float] = {}
    self.arith = taskspec.builder(taskspec.ARITHMETIC)
    self.register_selfgen = taskspec.builder(taskspec.SELFGEN).register
    self.exemplars = exemplars_lib.get('arithmetic', data.num_exemplars)
    self.vocab_path, self.vocab = demo_base.prepare_data(self.path('data'),
                                                         data)
    vocab_lib.check_model_vocab(self.vocab, settings.model_config.vocab_size,
                                self.vocab_path)
    self.test = inputs.load_split(self.arith.task, 'test')
    self.unlabeled = taskspec.load_questions(self.arith.task, 'unlabeled')
    self.seed_tasks = (inputs.member_tasks(self.arith.mixture)
                       if settings.mix_seed_data else [])
    self._mixtures: dict[tuple[Any, ...], str] = {}

  def _timed(self, key: str, fn, *args, **kwargs):
    t0 = time.monotonic()
    out = fn(*args, **kwargs)
    self.timings[key] = time.monotonic() - t0
    return out

  def _train(self, model_dir: str, mixture: str, settings, init: str | None,
             config: decoder_lib.DecoderConfig,
             **learner: Any) -> common.Model:
    name = os.path.relpath(model_dir, self.output_dir)
    self._timed(f'train {name}', train_lib.train_with, settings,
                model_config=config, mixture_or_task_name=mixture,
                task_feature_lengths=self.settings.task_feature_lengths,
                model_dir=model_dir, initial_checkpoint_path=init,
                seed=self.settings.seed, **learner)
    return common.Model(model_dir, checkpoints.restore_params(config,
                                                              model_dir),
                        config)

  def evaluate(self, arm, model, config, *, kept=None, exemplars=None):
    model_config = model.config or self.settings.model_config
    out = self._timed(
        f'eval {arm}', evaluator.evaluate, model_config=model_config,
        params=model.params, examples=self.test,
        exemplars=self.exemplars if exemplars is None else exemplars,
        config=config.with_seed(self.settings.seed), vocab=self.vocab,
        output_dir=self.path(arm, 'eval'), desc=f'eval {arm}')
    found = styles.eval_styles(self.path(arm, 'eval', 'predictions.jsonl'),
                               arithmetic.style_of)
    if kept is not None and kept.learner == 'sft':
      found['kept'] = styles.kept_styles(kept.files['arith'],
                                         arithmetic.style_of)
    return {TASK: results.ArmResult.from_json(
        {**{k: out[k] for k in KEPT_KEYS if k in out}, 'styles': found})}

  def self_generate(self, arm, model, *, no_vote, samples_dir, formats=None,
                    questions=None, exemplars=None, learner='sft',
                    margin=0.0):
    questions = self.unlabeled if questions is None else questions
    exemplars = self.exemplars if exemplars is None else exemplars
    t0 = time.monotonic()
    for shard in range(self.settings.sample_shards):  # same paths any count
      sample_lib.sample(
          model_config=self.settings.model_config, params=model.params,
          questions=questions, output_dir=samples_dir,
          sampling_config=self.settings.sampling_config, exemplars=exemplars,
          vocab=self.vocab, shard_index=shard,
          num_shards=self.settings.sample_shards)
    path = aggregate_lib.aggregate(
        samples_dir=samples_dir, questions=questions,
        output_dir=self.path(arm, 'selfgen'), exemplars=exemplars,
        no_vote=no_vote, seed=self.settings.seed,
        min_vote_share=self.settings.min_vote_share,
        formats=self.settings.formats if formats is None else formats,
        learner=learner, margin=margin)
    self.timings[f'self-generate {arm}'] = time.monotonic() - t0
    return common.SelfGenerated({'arith': path}, learner=learner)

  def _mixture(self, data: common.SelfGenerated, round_: int,
               suffix: str) -> str:
    key = (data.files['arith'], round_, suffix)
    if key not in self._mixtures:
      self._mixtures[key] = self.register_selfgen(
          data.files['arith'], 'arith', round_, vocabulary=self.vocab_path,
          extra_tasks=self.seed_tasks, **({'suffix': suffix} if suffix
                                          else {}))
    return self._mixtures[key]

  def fit(self, arm, data, *, round_, suffix, init, config=None,
          settings=None):
    settings = settings or self.settings.finetune
    if data.learner == 'preference':
      if next(iter(records.read_jsonl(data.files['arith'],
                                      records.PreferencePair)), None) is None:
        return None  # no question passed the margin
      task = taskspec.builder(taskspec.PAIRS).register(
          data.files['arith'], 'arith', round_, vocabulary=self.vocab_path,
          suffix=suffix)
      return self._train(self.path(arm, 'model'), task, settings,
                         init.checkpoint,
                         config or self.settings.model_config,
                         learner='preference', preference=data.preference)
    return self._train(self.path(arm, 'model'),
                       self._mixture(data, round_, suffix), settings,
                       init.checkpoint, config or self.settings.model_config)

  def train_control(self):
    return self._train(self.path('control', 'model'), self.arith.mixture,
                       self.settings.finetune, self.base.checkpoint,
                       self.settings.model_config)

  def self_exemplars(self, arm, ablation):
    return exemplar_gen.generate_exemplars(
        model_config=self.settings.model_config, params=self.base.params,
        vocab=self.vocab, questions=self.unlabeled,
        config=ablation.exemplar_gen, output_dir=self.path(arm, 'exemplars'))

  def generated_questions(self, arm, suffix, ablation, exemplars):
    # Paper §3.3: a pool the model writes from a few unlabeled seeds.
    writer = self.base
    if ablation.question_warmup is not None:
      warm_path = self.path(arm, 'warmup', 'examples.jsonl')
      if not fileio.is_complete(warm_path):
        fileio.write_jsonl(warm_path, question_gen.warmup_examples(
            taskspec.load_questions(self.arith.task, 'seed'),
            ablation.question_gen, ablation.num_warmup_examples))
      writer = self._train(
          self.path(arm, 'warmup', 'model'), self.register_selfgen(
              warm_path, 'arith', 0, vocabulary=self.vocab_path,
              suffix=f'{suffix}_warmup'), ablation.question_warmup,
          self.base.checkpoint, self.settings.model_config)
    return self._timed(
        f'question gen {arm}', question_gen.generate_pool,
        model_config=self.settings.model_config, params=writer.params,
        answer_params=self.base.params, vocab=self.vocab,
        seed_questions=self.unlabeled,
        exemplars=self.exemplars if exemplars is None else exemplars,
        config=ablation.question_gen, output_dir=self.path(arm, 'questions'),
        task=self.arith.task)

  def pretrain_student(self, arm, student):
    vocab_lib.check_model_vocab(self.vocab, student.model_config.vocab_size,
                                self.vocab_path)
    return self.pretrain(self.path(arm, 'base'), student.model_config,
                         student.base_train, student.base_seed)

  def pretrain(self, model_dir: str, config: decoder_lib.DecoderConfig,
               settings: train_lib.TrainSettings,
               train_seed: int) -> common.Model:
    """A base trained on the labeled seed split until its plateau."""
    self._timed(
        f'train {os.path.relpath(model_dir, self.output_dir)}',
        demo_base.train_base, model_dir, model_config=config,
        vocab=self.vocab, settings=settings,
        plateau=self.settings.base_plateau,
        task_feature_lengths=self.settings.task_feature_lengths,
        seed=train_seed, num_exemplars=self.data.num_exemplars,
        # The plateau checks' greedy CoT decodes as far as evaluation does.
        max_decode_steps=self.settings.eval_before.sampling.max_decode_steps)
    return common.Model(model_dir, checkpoints.restore_params(config,
                                                              model_dir),
                        config)


def run_pipeline(
    *,
    output_dir: str,
    model_config: decoder_lib.DecoderConfig,
    seed: int = 0,
    data: arithmetic.DataConfig,
    task_feature_lengths: Mapping[str, int],
    base_artifact: str | None = None,
    base_train: train_lib.TrainSettings | None = None,
    base_plateau: train_lib.Plateau | None = None,
    finetune: train_lib.TrainSettings,
    sampling_config: sampling.SamplingConfig,
    eval_before: evaluator.EvalConfig,
    eval_after: evaluator.EvalConfig,
    num_rounds: int = 1,
    mix_seed_data: bool = True,
    min_vote_share: float = 0.0,
    run_control: bool = True,
    run_no_vote: bool = True,
    formats: Sequence[str] = prompts.FORMAT_NAMES,
    finetune_from: str = 'base',
    ablations: Mapping[str, Ablation] | None = None,
    students: Mapping[str, Student] | None = None,
    sample_shards: int = 1,
) -> dict:
  """Runs the demo study; returns (and writes) metrics.json's content.

  The base is `base_artifact` (an `lmsi.checkpoints.artifact` dir,
  digest-checked; its model config replaces `model_config`) or, without
  one, trained here from `base_train` / `base_plateau` (tests, the chaos
  bench). The arithmetic and selfgen task builders must be registered
  (`import tasks.arithmetic`, `import tasks.selfgen`, as
  gin/experiments/demo.gin does).

  `formats` are the training formats of every LMSI round (paper: all
  four); `finetune_from` is where round r > 1 starts: 'base' (the paper's
  "from the same checkpoint", ReST-EM's restart) or 'previous' (round
  r-1's model); `ablations` are extra named arms (`Ablation`: training
  formats, self-generated questions, self-generated exemplars); `students`
  are distilled from round 1's data (`Student`; metrics.json's `students`
  has each one's `before` and `after`); `sample_shards` files per sampling.

  Raises:
    LookupError: if a task builder is not registered.
    ValueError: for an unknown `finetune_from` or format.
  """
  formats = tuple(f.value for f in aggregate_lib.parse_formats(formats))
  sample_cfg = dataclasses.replace(sampling_config, seed=seed)
  arms = common.Arms(
      num_rounds=num_rounds, finetune_from=finetune_from,
      run_control=run_control, run_no_vote=run_no_vote,
      ablations={name: arm.resolved(seed, sample_cfg)
                 for name, arm in (ablations or {}).items()},
      students=dict(students or {}))
  t_start = time.monotonic()
  os.makedirs(output_dir, exist_ok=True)
  d = lambda *p: os.path.join(output_dir, *p)
  base_meta = None
  if base_artifact:
    base_meta = artifact.verify(base_artifact)
    model_config = decoder_lib.DecoderConfig(**base_meta['model_config'])
  settings = DemoSettings(
      model_config=model_config, seed=seed, finetune=finetune,
      sampling_config=sample_cfg, eval_before=eval_before,
      eval_after=eval_after, task_feature_lengths=task_feature_lengths,
      formats=formats, min_vote_share=min_vote_share,
      mix_seed_data=mix_seed_data, sample_shards=sample_shards,
      base_plateau=base_plateau)
  ctx = DemoContext(output_dir, settings, data, common.Model(d('base')))
  ctx.base = _base_model(ctx, base_artifact, base_meta, base_train)
  study = common.run_arms(ctx, arms)[TASK]
  ctx.timings['total'] = time.monotonic() - t_start
  # Timings vary run to run; metrics.json holds only what must reproduce.
  fileio.write_json(d('timings.json'),
                    {k: round(v, 1) for k, v in ctx.timings.items()})
  metrics = study.to_json()
  fileio.write_json(d('metrics.json'), metrics)
  fileio.write_json(d('manifest.json'), {
      'git_revision': manifests.git_revision(),
      'data_dir': os.path.abspath(d('data')),
      'data': data.manifest(),
      'base_checkpoint': os.path.abspath(d('base')),
      'base_artifact': base_artifact and {
          'path': os.path.abspath(base_artifact),
          'sha256': base_meta['sha256']},
      'num_rounds': num_rounds, 'seed': seed,
      'choices': {'mix_seed_data': mix_seed_data,
                  'min_vote_share': min_vote_share,
                  'formats': list(formats),
                  'finetune_from': finetune_from,
                  'top_k': sampling_config.top_k,
                  'stop_strings': list(sampling_config.stop_strings)},
      'ablations': {name: arm.manifest()
                    for name, arm in arms.ablations.items()},
      'students': {name: st.manifest() for name, st in arms.students.items()},
      'deviations_from_paper': paper.deviations(paper.run_settings(
          sampling=sampling_config, finetune=finetune,
          eval_before=eval_before, eval_after=eval_after, formats=formats,
          min_vote_share=min_vote_share, mix_seed_data=mix_seed_data)),
  })
  report.write_report(study, output_dir, title='LMSI demo')
  print(report.format_table(study))
  return metrics


def _base_model(ctx: DemoContext, base_artifact: str | None,
                base_meta: dict | None,
                base_train: train_lib.TrainSettings | None) -> common.Model:
  """The committed base (an orbax copy of the artifact, its seed split
  checked to be this run's: the control trains on it), or one trained here."""
  base_ckpt = ctx.path('base')
  config = ctx.settings.model_config
  if base_meta is not None:
    demo_base.check_data(base_meta, ctx.path('data'))
    if not os.path.isdir(os.path.join(base_ckpt, 'checkpoints')):
      checkpoints.save_params(base_ckpt, artifact.load(base_artifact).params)
    return common.Model(base_ckpt, checkpoints.restore_params(config,
                                                              base_ckpt),
                        config)
  if base_train is None:
    raise ValueError('run_pipeline needs base_artifact or base_train')
  return ctx.pretrain(base_ckpt, config, base_train, ctx.settings.seed)
