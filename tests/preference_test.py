"""The preference learner (ScPO): pairs from the vote, the weighted DPO +
NLL loss, the reference scored once, and a resumable preference fit."""

import json
import math
import os

import jax
import numpy as np
import pytest

from lmsi.data import exemplars as exemplars_lib
from lmsi.data import records
from lmsi.data import taskspec
from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder as decoder_lib
from lmsi.sampling import generation as sampling
from lmsi.sampling import shard as sample_lib
from lmsi.trainer import preference
from lmsi.trainer import trainer as train
from lmsi.voting import aggregation as aggregate
from lmsi.voting import preference as pairs_lib


def _path(qid, sample, answer):
  return records.SampledPath(task='t', id=qid, sample=sample,
                             text=f'x{sample}. The answer is {answer}.',
                             answer=answer, logprob=-1.0)


def test_chosen_is_the_majority_rejected_the_least_voted():
  # q1: 7 x3, 5 x2, 9 x1, one unparseable (k = 7).
  answers = ['7', '5', '7', None, '9', '5', '7']
  group = [_path('q1', i, a) for i, a in enumerate(answers)]
  pair = pairs_lib.question_pair(group, margin=0.0, seed=0)
  assert pair.chosen.answer == '7' and pair.rejected.answer == '9'
  assert (pair.votes_chosen, pair.votes_rejected, pair.samples) == (3, 1, 7)
  assert pair.weight == pytest.approx(2 / 7)
  assert pair.rejected.sample == 4
  # The margin threshold tau drops pairs whose weight is below it.
  assert pairs_lib.question_pair(group, margin=0.3, seed=0) is None
  assert pairs_lib.question_pair(group, margin=2 / 7, seed=0) is not None
  # One distinct answer: nothing to reject.
  assert pairs_lib.question_pair([_path('q', i, '4') for i in range(4)],
                                 margin=0.0, seed=0) is None


def test_pairs_are_keyed_by_seed_and_question_not_order():
  group = [_path('q', i, a) for i, a in enumerate('7757337')]
  picks = {pairs_lib.question_pair(group, margin=0.0, seed=s).chosen.sample
           for s in range(30)}
  assert picks == {0, 1, 3, 6}  # every path of the majority answer '7'
  shuffled = list(reversed(group))
  for s in range(5):
    a = pairs_lib.question_pair(group, margin=0.0, seed=s)
    b = pairs_lib.question_pair(shuffled, margin=0.0, seed=s)
    assert (a.chosen, a.rejected) == (b.chosen, b.rejected)
  pairs, counts = pairs_lib.select_pairs(
      group + [_path('r', i, '1') for i in range(3)]
      + [_path('s', i, a) for i, a in enumerate('1112')], margin=0.5)
  assert [p.chosen.id for p in pairs] == ['s']
  assert counts == {'questions': 3, 'samples': 14, 'one_answer': 1,
                    'below_margin': 1, 'pairs': 1}
  with pytest.raises(ValueError, match='margin'):
    pairs_lib.select_pairs(group, margin=1.5)


def _toy_pairs():
  row = lambda *ids: np.asarray(ids, np.int32)
  return preference.TokenPairs(
      ids=['a', 'b'], inputs=[row(5, 6, 7), row(8, 9)],
      chosen=[row(10, 11, 1), row(12, 1)],
      rejected=[row(13, 1), row(14, 15, 16, 1)],
      weights=np.asarray([0.5, 0.25], np.float32))


def test_pair_batch_rows_and_loss_at_the_reference(tiny_cfg):
  """Chosen rows first; at params == reference the DPO term is log 2, and
  the NLL term is the chosen path's mean token NLL; the loss is the
  pair-weighted mean."""
  pairs = _toy_pairs()
  batch = preference.pair_batch(pairs, np.asarray([0, 1]), 64)
  assert batch['tokens'].shape == (4, 32)
  assert list(batch['tokens'][0, :6]) == [5, 6, 7, 10, 11, 1]
  assert list(batch['tokens'][3, :6]) == [8, 9, 14, 15, 16, 1]
  assert batch['weights'][0].sum() == 3 and batch['weights'][3].sum() == 4
  assert list(batch['pair_weight'][:, 0]) == [0.5, 0.25, 0.5, 0.25]
  params = decoder_lib.init_params(tiny_cfg, 0)[0]
  logp = np.asarray(preference.sequence_logprobs(tiny_cfg, params, batch))
  ref = np.stack([logp[:2], logp[2:]], -1)
  batch = preference.pair_batch(pairs, np.asarray([0, 1]), 64, ref)
  cfg = preference.PreferenceConfig(beta=0.3, alpha=2.0)
  got = float(preference.loss_fn(tiny_cfg, cfg, params, batch))
  nll = -logp[:2] / np.asarray([3.0, 2.0])
  want = np.mean(np.asarray([0.5, 0.25]) * (math.log(2) + 2.0 * nll))
  assert got == pytest.approx(want, rel=1e-5)
  # Raising the chosen path's log-prob over the reference lowers the loss.
  better = dict(batch, ref=batch['ref'] - np.asarray([[1.], [1.], [0.], [0.]]))
  assert float(preference.loss_fn(tiny_cfg, cfg, params, better)) < got
  with pytest.raises(ValueError, match='beta'):
    preference.PreferenceConfig(beta=0.0)


def test_batches_resume_where_they_left_off():
  pairs = _toy_pairs()
  ref = np.zeros((2, 2), np.float32)
  whole = preference.batches(pairs, ref, 64, 2, seed=3)
  seen = [next(whole) for _ in range(5)]
  later = preference.batches(pairs, ref, 64, 2, seed=3, start_step=3)
  for want in seen[3:]:
    got = next(later)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])


@pytest.fixture(scope='module')
def pairs_task(trained_tiny, tiny_cfg, tmp_path_factory):
  """The tiny model's pairs on the unlabeled split, registered for SeqIO."""
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  from tasks import selfgen  # pylint: disable=g-import-not-at-top
  root, params = trained_tiny
  out = tmp_path_factory.mktemp('pairs')
  arith_tasks.register(str(root / 'data'))
  questions = taskspec.load_questions(arith_tasks.TASK, 'unlabeled')
  exemplars = exemplars_lib.get('arithmetic')
  sample_lib.sample(
      model_config=tiny_cfg, params=params, questions=questions,
      output_dir=str(out / 'samples'), exemplars=exemplars,
      vocab=arith_tasks.vocabulary(str(root / 'data')),
      sampling_config=sampling.SamplingConfig(num_samples=8,
                                              max_decode_steps=64))
  path = aggregate.aggregate(
      samples_dir=str(out / 'samples'), questions=questions,
      output_dir=str(out / 'pairs'), exemplars=exemplars,
      learner='preference', margin=0.1)
  manifest = json.load(open(out / 'pairs' / 'aggregate_manifest.json'))
  vocab_path = str(root / 'data' / 'vocab.json')
  if not os.path.exists(vocab_path):
    vocab_path = 'bytes'
  name = selfgen.register_pairs(path, 'arith', 1, vocabulary=vocab_path)
  return root, params, path, manifest, name


def test_pairs_file_and_manifest(pairs_task):
  _, _, path, manifest, _ = pairs_task
  pairs = list(records.read_jsonl(path, records.PreferencePair))
  assert pairs and manifest['counts']['pairs'] == len(pairs)
  assert manifest['choices']['learner'] == 'preference'
  assert manifest['choices']['margin'] == 0.1
  for p in pairs:
    assert p.votes_chosen > p.votes_rejected
    assert p.weight == pytest.approx(
        (p.votes_chosen - p.votes_rejected) / p.samples)
    assert p.weight >= 0.1 and p.chosen != p.rejected
    assert p.inputs.endswith('A:') and p.chosen.startswith(' ')


def _fit(tiny_cfg, name, model_dir, init, steps, period):
  return train.train(
      model_config=tiny_cfg, mixture_or_task_name=name,
      task_feature_lengths={'inputs': 256, 'targets': 64},
      train_steps=steps, model_dir=str(model_dir),
      initial_checkpoint_path=str(init), batch_size=8, learning_rate=1e-3,
      optimizer='adamw', log_period=1, checkpoint_period=period,
      learner='preference',
      preference=preference.PreferenceConfig(beta=0.5, alpha=1.0))


def test_preference_fit_scores_the_reference_once_and_resumes_bitwise(
    pairs_task, tiny_cfg, tmp_path):
  root, params, _, _, name = pairs_task
  init = root / 'model'
  straight = _fit(tiny_cfg, name, tmp_path / 'a', init, 6, 6)
  assert straight.step == 6 and math.isfinite(straight.loss)
  ref = json.load(open(tmp_path / 'a' / preference.REFERENCE_FILE))
  assert ref['reference_sha256'] == checkpoints.params_sha256(params)
  manifest = json.load(open(tmp_path / 'a' / 'train_manifest.json'))
  assert manifest['learner'] == 'preference'
  assert manifest['preference'] == {'beta': 0.5, 'alpha': 1.0}
  # Interrupted after step 3 (its checkpoint), then resumed to 6.
  _fit(tiny_cfg, name, tmp_path / 'b', init, 3, 3)
  resumed = _fit(tiny_cfg, name, tmp_path / 'b', init, 6, 3)
  assert resumed.step == 6
  assert json.load(open(tmp_path / 'b' / preference.REFERENCE_FILE)) == ref
  a = checkpoints.restore_params(tiny_cfg, str(tmp_path / 'a'))
  b = checkpoints.restore_params(tiny_cfg, str(tmp_path / 'b'))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The first step's loss is at the reference: w * (log 2 + alpha * NLL).
  first = json.loads(open(tmp_path / 'a' / 'metrics.jsonl').readline())
  assert first['step'] == 1 and first['loss'] > 0


def test_reference_for_other_pairs_is_refused(pairs_task, tmp_path):
  model_dir = tmp_path / 'm'
  model_dir.mkdir()
  (model_dir / preference.REFERENCE_FILE).write_text(json.dumps(
      {'pairs_sha256': 'ffff', 'reference_sha256': 'x', 'logprobs': []}))
  with pytest.raises(ValueError, match='other pairs'):
    preference.stored_reference(str(model_dir), _toy_pairs(),
                                reference_params=None, compute=None)
  (model_dir / preference.REFERENCE_FILE).unlink()
  with pytest.raises(ValueError, match='already'):
    preference.stored_reference(str(model_dir), _toy_pairs(),
                                reference_params=None, compute=None)
  assert os.listdir(model_dir) == []


def test_the_binaries_run_the_preference_round(pairs_task, tmp_path):
  """`python -m lmsi.aggregate` with LEARNER 'preference' and `python -m
  lmsi.train` with gin/runs/finetune_preference.gin (in process, as the
  binaries run them): the same pairs as the library call, then a fit whose
  manifest and config.gin name the learner."""
  import gin  # pylint: disable=g-import-not-at-top
  from lmsi.runtime import gin_flags  # pylint: disable=g-import-not-at-top
  root, _, path, _, _ = pairs_task
  samples = os.path.join(os.path.dirname(os.path.dirname(path)), 'samples')
  vocab = str(root / 'data' / 'vocab.json')
  vocab = vocab if os.path.exists(vocab) else 'bytes'

  def run(module, function, output_arg, flags):
    gin.clear_config()
    try:
      return gin_flags.main(module, function, output_dir_arg=output_arg,
                            argv=flags)
    finally:
      gin.clear_config()

  [cli_pairs] = run('lmsi.aggregate', 'aggregate_task', 'output_dir', [
      '--gin_file=gin/runs/aggregate.gin', '--gin.TASK="lmsi_arith_v1"',
      f'--gin.DATA_DIR="{root / "data"}"', '--gin.SPLIT="unlabeled"',
      f'--gin.SAMPLES_DIR="{samples}"', f'--gin.OUTPUT_DIR="{tmp_path}/p"',
      '--gin.EXEMPLARS="arithmetic"', '--gin.ANSWER_FAMILY="number"',
      '--gin.LEARNER="preference"', '--gin.MARGIN=0.1'])
  assert open(cli_pairs, 'rb').read() == open(path, 'rb').read()
  result = run('lmsi.train', 'train', 'model_dir', [
      '--gin_file=gin/testing/tiny.gin',
      '--gin_file=gin/runs/finetune_preference.gin',
      f'--gin.VOCABULARY="{vocab}"', f'--gin.PAIRS_FILE="{cli_pairs}"',
      f'--gin.MODEL_DIR="{tmp_path}/m"',
      f'--gin.INITIAL_CHECKPOINT_PATH="{root / "model"}"',
      '--gin.TRAIN_STEPS=2', '--gin.BATCH_SIZE=8', '--gin.BETA=0.25',
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 256, 'targets': 64}"])
  assert result.step == 2
  manifest = json.load(open(tmp_path / 'm' / 'train_manifest.json'))
  assert manifest['learner'] == 'preference'
  assert manifest['preference'] == {'beta': 0.25, 'alpha': 1.0}
  assert manifest['mixture_or_task_name'] == 'lmsi_pairs_lmsi_r1'
  assert "learner = 'preference'" in open(tmp_path / 'm' / 'config.gin').read()
