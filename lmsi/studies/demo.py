"""One or more LMSI rounds end to end, with control and ablation.

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
import re
import time
from collections.abc import Mapping
from typing import Any

from lmsi.voting import aggregation as aggregate_lib
from lmsi.demo import arithmetic
from lmsi.checkpoints import artifact
from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder as decoder_lib
from lmsi.demo import base as demo_base
from lmsi.evaluation import evaluator as evaluate_lib
from lmsi.self_inputs import exemplar_gen
from lmsi.data import exemplars as exemplars_lib
from lmsi.data import inputs
from lmsi.runtime import manifests
from lmsi.studies import paper
from lmsi.data import prompts
from lmsi.self_inputs import questions as question_gen
from lmsi.runtime import fileio
from lmsi.studies import report
from lmsi.sampling import shard as sample_lib
from lmsi.sampling import generation as sampling
from lmsi.demo import styles
from lmsi.data import taskspec
from lmsi.trainer import trainer as train_lib
from lmsi.vocab import simple as vocab_lib

FINETUNE_FROM = ('base', 'previous')
QUESTIONS = ('unlabeled', 'generated')
EXEMPLARS = ('hand', 'self')


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
  exemplars='self' (paper §3.3): `lmsi.self_inputs.exemplar_gen`'s exemplars, from the
  base's zero-shot answers, replace the hand-written ones in sampling,
  training prompts and evaluation; the arm adds a '<name> base' row, the
  base evaluated with them. The run's seed replaces both configs' seeds.
  """

  formats: tuple[str, ...] = prompts.FORMAT_NAMES  # paper Table 6 ablates
  questions: str = 'unlabeled'
  question_gen: question_gen.QuestionGenConfig | None = None
  question_warmup: train_lib.TrainSettings | None = None
  num_warmup_examples: int = 2048
  exemplars: str = 'hand'
  exemplar_gen: exemplar_gen.ExemplarGenConfig | None = None

  def __post_init__(self):
    if self.questions not in QUESTIONS or self.exemplars not in EXEMPLARS:
      raise ValueError(f'Ablation: questions={self.questions!r} must be one '
                       f'of {QUESTIONS}, exemplars={self.exemplars!r} one of '
                       f'{EXEMPLARS}')

  def resolved(self, seed: int,
               sampling_config: sampling.SamplingConfig) -> Ablation:
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
    out = {'formats': list(aggregate_lib.parse_formats(self.formats)),
           'questions': self.questions, 'exemplars': self.exemplars}
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
  base_train: train_lib.TrainSettings
  base_seed: int = 0  # fixed across study seeds, as the teacher's base is

  def manifest(self) -> dict[str, Any]:
    return {'model_config': dataclasses.asdict(self.model_config),
            'base_train': dataclasses.asdict(self.base_train),
            'base_seed': self.base_seed}


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
    eval_before: evaluate_lib.EvalConfig,
    eval_after: evaluate_lib.EvalConfig,
    num_rounds: int = 1,
    mix_seed_data: bool = True,
    min_vote_share: float = 0.0,
    run_control: bool = True,
    run_no_vote: bool = True,
    formats: tuple[str, ...] = prompts.FORMAT_NAMES,
    finetune_from: str = 'base',
    ablations: Mapping[str, Ablation] | None = None,
    students: Mapping[str, Student] | None = None,
    sample_shards: int = 1,
) -> dict:
  """Runs the demo study; returns (and writes) metrics.json's content.

  The base is `base_artifact` (an `lmsi.checkpoints.artifact` dir, digest-checked; its
  model config replaces `model_config`) or, without one, trained here from
  `base_train` / `base_plateau` (tests, the chaos bench). The arithmetic
  and selfgen task builders must be registered (`import tasks.arithmetic`,
  `import tasks.selfgen`, as gin/experiments/demo.gin does).

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
  if finetune_from not in FINETUNE_FROM:
    raise ValueError(f'finetune_from={finetune_from!r}: expected one of '
                     f'{FINETUNE_FROM}')
  formats = tuple(f.value for f in aggregate_lib.parse_formats(formats))
  sample_cfg = dataclasses.replace(sampling_config, seed=seed)
  ablations = {name: arm.resolved(seed, sample_cfg)
               for name, arm in (ablations or {}).items()}
  students = dict(students or {})
  for name in [*ablations, *students]:
    if not re.fullmatch(r'[A-Za-z0-9_]+', name):
      raise ValueError(f'arm name {name!r}: use letters, digits and _ '
                       '(it names a directory and SeqIO tasks)')
  arith = taskspec.builder(taskspec.ARITHMETIC)
  register_selfgen = taskspec.builder(taskspec.SELFGEN).register

  t_start = time.monotonic()
  timings: dict[str, float] = {}
  os.makedirs(output_dir, exist_ok=True)
  d = lambda *p: os.path.join(output_dir, *p)
  exemplars = exemplars_lib.get('arithmetic', data.num_exemplars)
  base_meta = None
  if base_artifact:
    base_meta = artifact.verify(base_artifact)
    model_config = decoder_lib.DecoderConfig(**base_meta['model_config'])
  vocab_path, vocab = demo_base.prepare_data(d('data'), data)
  vocab_lib.check_model_vocab(vocab, model_config.vocab_size, vocab_path)
  test = inputs.load_split(arith.task, 'test')
  unlabeled = taskspec.load_questions(arith.task, 'unlabeled')

  def fit(name, mixture, settings, init=None, config=None):
    t0 = time.monotonic()
    config = config or model_config
    train_lib.train_with(
        settings, model_config=config, mixture_or_task_name=mixture,
        task_feature_lengths=task_feature_lengths, model_dir=d(name),
        initial_checkpoint_path=init, seed=seed)
    timings[f'train {name}'] = time.monotonic() - t0
    return checkpoints.restore_params(config, d(name))

  def evaluate(name, params, config, model=None, arm_exemplars=exemplars):
    t0 = time.monotonic()
    out = evaluate_lib.evaluate(
        model_config=model or model_config, params=params, examples=test,
        exemplars=arm_exemplars, config=config.with_seed(seed),
        vocab=vocab,
        output_dir=d(name, 'eval'), desc=f'eval {name}')
    timings[f'eval {name}'] = time.monotonic() - t0
    kept_keys = ('accuracy', 'calibration', 'num_questions', 'temperature',
                 'sweep', 'sweep_best')  # report.md reads these
    return {**{k: out[k] for k in kept_keys if k in out},
            'styles': styles.eval_styles(
                d(name, 'eval', 'predictions.jsonl'), arithmetic.style_of)}

  def kept(selfgen_path):
    return styles.kept_styles(selfgen_path, arithmetic.style_of)

  def pretrain(model_dir, config, settings, train_seed):
    t0 = time.monotonic()
    demo_base.train_base(
        model_dir, model_config=config, vocab=vocab, settings=settings,
        plateau=base_plateau, task_feature_lengths=task_feature_lengths,
        seed=train_seed, num_exemplars=data.num_exemplars,
        max_decode_steps=eval_before.sampling.max_decode_steps)
    timings[f'train {os.path.relpath(model_dir, output_dir)}'] = (
        time.monotonic() - t0)
    return checkpoints.restore_params(config, model_dir)

  base_ckpt = d('base')
  if base_meta is not None:
    # The committed base: its seed split must be the one here (the control
    # arm trains on it), and fine-tuning starts from an orbax copy of it.
    demo_base.check_data(base_meta, d('data'))
    if not os.path.isdir(os.path.join(base_ckpt, 'checkpoints')):
      checkpoints.save_params(base_ckpt, artifact.load(base_artifact).params)
    base = checkpoints.restore_params(model_config, base_ckpt)
  else:
    if base_train is None:
      raise ValueError('run_pipeline needs base_artifact or base_train')
    base = pretrain(base_ckpt, model_config, base_train, seed)
  metrics: dict[str, Any] = {'rounds': [
      {'round': 0, **evaluate('base', base, eval_before)}]}
  seed_tasks = inputs.member_tasks(arith.mixture) if mix_seed_data else []

  def self_generate(name, params, no_vote, samples_dir, arm_formats=formats,
                    questions=unlabeled, arm_exemplars=exemplars):
    t0 = time.monotonic()
    for shard in range(sample_shards):  # the same paths for any count
      sample_lib.sample(
          model_config=model_config, params=params, questions=questions,
          output_dir=samples_dir, sampling_config=sample_cfg,
          exemplars=arm_exemplars, vocab=vocab, shard_index=shard,
          num_shards=sample_shards)
    path = aggregate_lib.aggregate(
        samples_dir=samples_dir, questions=questions,
        output_dir=d(name, 'selfgen'), exemplars=arm_exemplars,
        no_vote=no_vote, seed=seed, min_vote_share=min_vote_share,
        formats=arm_formats)
    timings[f'self-generate {name}'] = time.monotonic() - t0
    return path

  params, mixtures = base, {}
  for r in range(1, num_rounds + 1):
    path = self_generate(f'r{r}', params, False, d(f'r{r}', 'samples'))
    mixture = mixtures[r] = register_selfgen(
        path, 'arith', r, vocabulary=vocab_path, extra_tasks=seed_tasks)
    init = (d(f'r{r - 1}', 'model')
            if finetune_from == 'previous' and r > 1 else base_ckpt)
    params = fit(f'r{r}/model', mixture, finetune, init=init)
    metrics['rounds'].append({'round': r, **evaluate(f'r{r}', params,
                                                     eval_after)})
    metrics['rounds'][-1]['styles']['kept'] = kept(path)
  def generated_questions(name, suffix, arm, arm_exemplars):
    # Paper §3.3: a pool the model writes from a few unlabeled seeds.
    writer = base
    if arm.question_warmup is not None:
      warm_path = d(name, 'warmup', 'examples.jsonl')
      if not fileio.is_complete(warm_path):
        fileio.write_jsonl(warm_path, question_gen.warmup_examples(
            taskspec.load_questions(arith.task, 'seed'), arm.question_gen,
            arm.num_warmup_examples))
      writer = fit(f'{name}/warmup/model', register_selfgen(
          warm_path, 'arith', 0, vocabulary=vocab_path,
          suffix=f'{suffix}_warmup'), arm.question_warmup, init=base_ckpt)
    t0 = time.monotonic()
    pool = question_gen.generate_pool(
        model_config=model_config, params=writer, answer_params=base,
        vocab=vocab, seed_questions=unlabeled, exemplars=arm_exemplars,
        config=arm.question_gen, output_dir=d(name, 'questions'),
        task=arith.task)
    timings[f'question gen {name}'] = time.monotonic() - t0
    return pool

  def round1_arm(name, suffix, arm=Ablation(), no_vote=False):
    # Round 1 from the base: the base's paths as round 1 drew them (same
    # model, questions, exemplars and seed) unless the arm changes the
    # questions or exemplars, voted (or not), fine-tuned from the base.
    # Returns {row name: result}.
    key, rows = os.path.basename(name), {}
    questions, arm_exemplars = unlabeled, exemplars
    if arm.exemplars == 'self':
      arm_exemplars = exemplar_gen.generate_exemplars(
          model_config=model_config, params=base, vocab=vocab,
          questions=unlabeled, config=arm.exemplar_gen,
          output_dir=d(name, 'exemplars'))
      rows[f'{key} base'] = evaluate(f'{name}/base', base, eval_before,
                                     arm_exemplars=arm_exemplars)
    if arm.questions == 'generated':
      questions = generated_questions(name, suffix, arm, arm_exemplars)
    shared = questions is unlabeled and arm_exemplars is exemplars
    path = self_generate(name, base, no_vote,
                         d('r1' if shared else name, 'samples'),
                         arm_formats=arm.formats, questions=questions,
                         arm_exemplars=arm_exemplars)
    mixture = register_selfgen(path, 'arith', 1, vocabulary=vocab_path,
                               extra_tasks=seed_tasks, suffix=suffix)
    arm_params = fit(f'{name}/model', mixture, finetune, init=base_ckpt)
    rows[key] = evaluate(name, arm_params, eval_after,
                         arm_exemplars=arm_exemplars)
    rows[key]['styles']['kept'] = kept(path)
    return rows

  for name, arm in ablations.items():
    metrics.setdefault('arms', {}).update(
        round1_arm(f'arms/{name}', f'_{name}', arm=arm))
  for name, student in students.items():
    sdir = f'students/{name}'
    vocab_lib.check_model_vocab(vocab, student.model_config.vocab_size,
                                vocab_path)
    s_base = pretrain(d(sdir, 'base'), student.model_config,
                      student.base_train, student.base_seed)
    s_after = fit(f'{sdir}/model', mixtures[1], finetune,
                  init=d(sdir, 'base'), config=student.model_config)
    metrics.setdefault('students', {})[name] = {
        'before': evaluate(f'{sdir}/base', s_base, eval_before,
                           student.model_config),
        'after': evaluate(sdir, s_after, eval_after, student.model_config)}
  if run_control:
    control = fit('control/model', arith.mixture, finetune,
                  init=base_ckpt)
    metrics['control'] = evaluate('control', control, eval_after)
  if run_no_vote:
    metrics['no_vote'] = round1_arm('no_vote', '_novote',
                                    arm=Ablation(formats=formats),
                                    no_vote=True)['no_vote']
  timings['total'] = time.monotonic() - t_start
  # Timings vary run to run; metrics.json holds only what must reproduce.
  fileio.write_json(d('timings.json'),
                     {k: round(v, 1) for k, v in timings.items()})
  fileio.write_json(d('metrics.json'), metrics)
  fileio.write_json(d('manifest.json'), {
      'git_revision': manifests.git_revision(),
      'data_dir': os.path.abspath(d('data')),
      'data': data.manifest(),
      'base_checkpoint': os.path.abspath(base_ckpt),
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
      'ablations': {name: arm.manifest() for name, arm in ablations.items()},
      'students': {name: st.manifest() for name, st in students.items()},
      'deviations_from_paper': paper.deviations(paper.run_settings(
          sampling=sampling_config, finetune=finetune,
          eval_before=eval_before, eval_after=eval_after, formats=formats,
          min_vote_share=min_vote_share, mix_seed_data=mix_seed_data)),
  })
  report.write_report(metrics, output_dir, title='LMSI demo')
  print(report.format_table(metrics))
  return metrics
