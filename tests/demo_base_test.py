"""The demo's pretrained base: reasoning styles, the artifact format, the
committed checkpoint, and a demo run that starts from an artifact."""

import dataclasses
import json
import os
import shutil

import jax
import numpy as np
import pytest

from lmsi.data import answers
from lmsi.demo import arithmetic
from lmsi.checkpoints import store as checkpoints
from lmsi.checkpoints import artifact
from lmsi.demo import base as demo_base
from lmsi.evaluation import evaluator as evaluate
from lmsi.studies import demo as pipeline
from lmsi.sampling import generation as sampling
from lmsi.trainer import trainer as train
from lmsi.trainer import step as train_step
import tasks.arithmetic  # noqa: F401  # the arithmetic task builder
import tasks.selfgen  # noqa: F401  # the selfgen one (lmsi.data.taskspec)
from tests.conftest import EASY, REPO

ASSET = os.path.join(REPO, 'assets', 'demo_base')
STYLES = (('jump', 0.4), ('so', 0.3), ('first', 0.3))


def test_every_style_is_right_and_recognised():
  d = arithmetic.Difficulty(min_steps=2, max_steps=5, max_start=20,
                            max_operand=9, max_total=30)
  for style in arithmetic.STYLES:
    for i in range(30):
      p = arithmetic.make_problem('seed', i, d, ((style, 1.0),))
      assert arithmetic.style_of(p.cot) == style, p.cot
      assert answers.extract_answer(p.cot, 'number') == p.answer
  # The style never changes the question (its own generator draws it).
  mixed = [arithmetic.make_problem('seed', i, d, STYLES) for i in range(300)]
  plain = [arithmetic.make_problem('seed', i, d) for i in range(300)]
  assert [p.question for p in mixed] == [p.question for p in plain]
  counts = {s: sum(arithmetic.style_of(p.cot) == s for p in mixed)
            for s, _ in STYLES}
  assert 0.33 < counts['jump'] / 300 < 0.47, counts
  assert arithmetic.style_of('Ann has 3 pens.') == 'other'
  with pytest.raises(ValueError, match='unknown reasoning style'):
    arithmetic.write_splits('/nonexistent', {}, {}, style_weights=(('x', 1),))


def test_artifact_round_trip_and_tamper(tiny_cfg, tmp_path):
  from lmsi.model import decoder  # pylint: disable=g-import-not-at-top
  params, _ = decoder.init_params(tiny_cfg, 3)
  vocab = tmp_path / 'vocab.json'
  arithmetic.vocabulary().save(str(vocab))
  out = str(tmp_path / 'art')
  digest = artifact.save(out, params=params, model_config=tiny_cfg,
                         vocab_file=str(vocab), manifest={'note': 'x'})
  again = str(tmp_path / 'art2')
  assert artifact.save(again, params=params, model_config=tiny_cfg,
                       vocab_file=str(vocab), manifest={}) == digest
  loaded = artifact.load(out)
  assert loaded.model_config == tiny_cfg
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded.params, params)
  with open(os.path.join(out, artifact.PARAMS_FILE), 'r+b') as f:
    f.seek(-8, os.SEEK_END)
    f.write(b'\0' * 8)
  with pytest.raises(ValueError, match='model.safetensors.*does not match'):
    artifact.load(out)
  with pytest.raises(FileNotFoundError, match='not a model artifact'):
    artifact.load(str(tmp_path))


def test_committed_base_loads_and_matches_its_digest(tmp_path):
  """assets/demo_base: digests hold, the config is decoder_demo.gin's, the
  data it names is what gin/data/demo.gin writes, and it learned the seed
  split (its loss there is far below an untrained model's)."""
  import gin  # pylint: disable=g-import-not-at-top
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  from lmsi.data import inputs  # pylint: disable=g-import-not-at-top
  base = artifact.load(ASSET)
  gin.clear_config()
  gin.add_config_file_search_path(REPO)
  gin.parse_config_file(os.path.join(REPO, 'gin/experiments/demo_base.gin'))
  cfg = gin.query_parameter('%MODEL_CONFIG').scoped_configurable_fn()
  data = {k: gin.query_parameter(f'%{k}') for k in (
      'SPLIT_SIZES', 'STYLE_WEIGHTS', 'NUM_EXEMPLARS', 'TASK_FEATURE_LENGTHS')}
  seed_d = gin.query_parameter('%SEED_DIFFICULTY').scoped_configurable_fn()
  hard_d = gin.query_parameter('%HARD_DIFFICULTY').scoped_configurable_fn()
  gin.clear_config()
  assert base.model_config == cfg
  manifest = base.meta['manifest']
  assert manifest['style_weights'] == [list(w) for w in data['STYLE_WEIGHTS']]
  assert manifest['train']['schedule'] == 'cosine'
  assert manifest['final_step'] == manifest['train']['steps']
  assert os.path.getsize(os.path.join(ASSET, artifact.PARAMS_FILE)) < 20e6
  # gin/data/demo.gin writes exactly the seed split and vocabulary it learned.
  demo_base.prepare_data(str(tmp_path), arithmetic.DataConfig(
      split_sizes=data['SPLIT_SIZES'], seed_difficulty=seed_d,
      hard_difficulty=hard_d, style_weights=data['STYLE_WEIGHTS'],
      num_exemplars=data['NUM_EXEMPLARS']))
  demo_base.check_data(base.meta, str(tmp_path))
  batch = next(inputs.training_batches(
      arith_tasks.SEED_MIXTURE, data['TASK_FEATURE_LENGTHS'], 32, seed=0))
  from lmsi.model import decoder  # pylint: disable=g-import-not-at-top
  loss = float(train_step.loss_fn(cfg, base.params, batch))
  untrained = float(train_step.loss_fn(cfg, decoder.init_params(cfg, 0)[0],
                                       batch))
  assert loss < 0.25 * untrained, (loss, untrained)


@pytest.fixture(scope='module')
def tiny_artifact(tiny_cfg, tmp_path_factory):
  """`demo_base.build` at toy scale: a tiny base trained a few steps."""
  root = tmp_path_factory.mktemp('demo_base')
  kwargs = dict(data=arithmetic.DataConfig(
      split_sizes={'seed': 24, 'seed_dev': 4, 'unlabeled': 4, 'test': 4},
      seed_difficulty=arithmetic.Difficulty(**EASY),
      hard_difficulty=arithmetic.Difficulty(**EASY), style_weights=STYLES,
      num_exemplars=1), task_feature_lengths={'inputs': 96, 'targets': 32})
  meta = demo_base.build(
      output_dir=str(root / 'run'), artifact_dir=str(root / 'artifact'),
      model_config=tiny_cfg, seed=0,
      train=train.TrainSettings(steps=6, batch_size=8, learning_rate=1e-3,
                                optimizer='adamw', warmup_steps=1,
                                schedule='cosine'),
      eval_period=3, max_decode_steps=16, **kwargs)
  return root, meta, kwargs


def test_build_writes_a_loadable_artifact(tiny_cfg, tiny_artifact):
  root, meta, _ = tiny_artifact
  assert meta['manifest']['final_step'] == 6
  assert [e['step'] for e in meta['manifest']['seed_dev_greedy_cot']] == [3, 6]
  names = {os.path.basename(i['path']) for i in meta['manifest']['inputs']}
  assert names == {'seed.jsonl', 'vocab.json'}
  loaded = artifact.load(str(root / 'artifact'))
  assert loaded.model_config == tiny_cfg
  trained = checkpoints.restore_params(tiny_cfg, str(root / 'run' / 'base'))
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded.params,
                         trained)


def test_pipeline_starts_from_the_artifact(tiny_cfg, tiny_artifact, tmp_path):
  root, meta, kwargs = tiny_artifact
  ev = evaluate.EvalConfig(ks=(1, 2), sampling=sampling.SamplingConfig(
      num_samples=2, max_decode_steps=16))
  fast = train.TrainSettings(steps=2, batch_size=8, learning_rate=1e-4,
                             optimizer='adamw')
  run = lambda out, **kw: pipeline.run_pipeline(
      output_dir=str(out), model_config=None, base_artifact=str(
          root / 'artifact'), finetune=fast,
      sampling_config=sampling.SamplingConfig(num_samples=2,
                                              max_decode_steps=16),
      eval_before=ev, eval_after=ev, mix_seed_data=True, **{**kwargs, **kw})
  metrics = run(tmp_path / 'demo')
  styles = metrics['rounds'][1]['styles']
  assert set(styles) == {'greedy', 'sampled', 'kept'}
  assert sum(c['n'] for c in styles['sampled'].values()) == 4 * 2
  with open(tmp_path / 'demo' / 'manifest.json') as f:
    manifest = json.load(f)
  assert manifest['base_artifact']['sha256'] == meta['sha256']
  base = checkpoints.restore_params(tiny_cfg, str(tmp_path / 'demo' / 'base'))
  jax.tree_util.tree_map(np.testing.assert_array_equal, base,
                         artifact.load(str(root / 'artifact')).params)
  report = (tmp_path / 'demo' / 'report.md').read_text()
  assert '## Reasoning styles' in report and 'maj@2 - greedy' in report
  # (mix_seed_data: a 6-step model's paths rarely parse, and an empty
  # self-generated mixture is refused.) A demo whose seed split differs from the
  # base's is refused.
  other = {**kwargs, 'data': dataclasses.replace(kwargs['data'], split_sizes={
      **kwargs['data'].split_sizes, 'seed': 23})}
  with pytest.raises(ValueError, match='seed.jsonl.*not the file the base'):
    run(tmp_path / 'other', **other)
