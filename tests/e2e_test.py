"""End to end on CPU: sample -> vote -> self-generated mixture -> train ->
evaluate, with the stage binaries' library functions and real files."""

import json
import os

import numpy as np

from lmsi.voting import aggregation as aggregate
from lmsi.checkpoints import store as checkpoints
from lmsi.evaluation import evaluator as evaluate
from lmsi.data import exemplars as exemplars_lib
from lmsi.data import prompts
from lmsi.data import records
from lmsi.sampling import shard as sample_lib
from lmsi.sampling import generation as sampling
from lmsi.data import taskspec
from lmsi.trainer import trainer as train


def test_one_round(trained_tiny, tiny_cfg, tmp_path):
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  import tasks.selfgen as selfgen_tasks  # pylint: disable=g-import-not-at-top
  from lmsi.data import inputs  # pylint: disable=g-import-not-at-top
  root, params = trained_tiny
  arith_tasks.register(str(root / 'data'))
  vocab = arith_tasks.vocabulary(str(root / 'data'))
  exemplars = exemplars_lib.get('arithmetic')
  questions = taskspec.load_questions(arith_tasks.TASK, 'unlabeled')[:2]
  # The questions are the unlabeled split's, in order (records.Question has
  # no gold field).
  with open(root / 'data' / 'unlabeled.jsonl') as f:
    raw = [json.loads(line) for line in f][:2]
  assert [(q.id, q.question) for q in questions] == [
      (r['id'], r['question']) for r in raw]
  shard = sample_lib.sample(
      model_config=tiny_cfg, params=params, questions=questions,
      output_dir=str(tmp_path / 'samples'), exemplars=exemplars, vocab=vocab,
      sampling_config=sampling.SamplingConfig(num_samples=4,
                                              max_decode_steps=64))
  paths = list(records.read_jsonl(shard, records.SampledPath))
  assert [(p.id, p.sample) for p in paths] == [
      (q.id, i) for q in questions for i in range(4)]
  selfgen = aggregate.aggregate(
      samples_dir=str(tmp_path / 'samples'), questions=questions,
      output_dir=str(tmp_path / 'selfgen'), exemplars=exemplars)
  manifest = json.load(open(tmp_path / 'selfgen/aggregate_manifest.json'))
  assert manifest['counts']['samples'] == 8
  examples = list(records.read_jsonl(selfgen, records.SelfGenExample))
  assert len(examples) == 4 * manifest['counts']['paths_kept']
  if not examples:  # keep the mixture non-empty: use all paths unvoted
    selfgen = aggregate.aggregate(
        samples_dir=str(tmp_path / 'samples'), questions=questions,
        output_dir=str(tmp_path / 'selfgen_nv'), exemplars=exemplars,
        no_vote=True)
  mixture = selfgen_tasks.register(
      selfgen, 'arith', 1, vocabulary=str(root / 'data' / 'vocab.json'),
      extra_tasks=[arith_tasks.seed_task_name(f) for f in prompts.Format])
  model_dir = str(tmp_path / 'ft')
  result = train.train(
      model_config=tiny_cfg, mixture_or_task_name=mixture,
      task_feature_lengths={'inputs': 256, 'targets': 64}, train_steps=2,
      model_dir=model_dir, initial_checkpoint_path=str(root / 'model'),
      batch_size=8, learning_rate=1e-3, optimizer='adafactor', log_period=1)
  assert result.step == 2 and np.isfinite(result.loss)
  tuned = checkpoints.restore_params(tiny_cfg, model_dir)
  diff = sum(float(np.abs(a - b).sum()) for a, b in zip(
      jax_leaves(tuned), jax_leaves(params)))
  assert diff > 0  # two real optimizer steps changed the weights
  assert len(open(os.path.join(model_dir, 'metrics.jsonl')).readlines()) == 2
  assert os.listdir(os.path.join(model_dir, 'tb'))
  test = inputs.load_split(arith_tasks.TASK, 'test')[:3]
  out = evaluate.evaluate(
      model_config=tiny_cfg, params=tuned, examples=test, exemplars=exemplars,
      config=evaluate.EvalConfig(ks=(1, 4), sampling=sampling.SamplingConfig(
          num_samples=4, max_decode_steps=48)),
      vocab=vocab, output_dir=str(tmp_path / 'eval'))
  assert set(out['accuracy']) == {'direct', 'greedy_cot', 'maj@1', 'maj@4'}
  preds = list(records.read_jsonl(str(tmp_path / 'eval/predictions.jsonl'),
                                  evaluate.Prediction))
  want = np.mean([p.gold == p.majority for p in preds])
  assert abs(out['accuracy']['maj@4'] - want) < 1e-9


def jax_leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
