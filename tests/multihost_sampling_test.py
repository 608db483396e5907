"""The sampling stage as a pod runs it: 2 local processes x 4 fake devices
(launch/local.py, jax.distributed on localhost) write the same merged samples,
byte for byte, as 1 process on 8 devices, and as 1 process writing 3 shards;
early-stopped voting; truncated shards are redone, never merged."""

import os
import subprocess
import sys

import pytest

from lmsi.data import records

from lmsi.runtime import fileio
from lmsi.data import shards
from lmsi.sampling import batched as stage
from tests.benchmarks_test import DATA
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(DATA, 'gsm8k')),
    reason=f'benchmark release files not found at {DATA}')


def _flags(root, out, extra=()):
  return [f'--gin_file={REPO}/gin/testing/tiny.gin',
          f'--gin_file={REPO}/gin/runs/sample.gin',
          f'--gin.DATA_DIR="{DATA}"', '--gin.TASK="lmsi_gsm8k_pool_v1"',
          '--gin.MAX_QUESTIONS=6', '--gin.NUM_EXEMPLARS=2',
          '--gin.NUM_SAMPLES=4', '--gin.MAX_DECODE_STEPS=16',
          '--gin.BATCH_QUESTIONS=2',
          f'--gin.INITIAL_CHECKPOINT_PATH="{root / "model"}"',
          f'--gin.VOCABULARY="{root / "data" / "vocab.json"}"',
          f'--gin.OUTPUT_DIR="{out}"', *extra]


def _env(devices):
  env = {**os.environ, 'PYTHONPATH': REPO, 'JAX_PLATFORMS': 'cpu',
         'TF_CPP_MIN_LOG_LEVEL': '3',
         'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  for key in ('LMSI_COORDINATOR_ADDRESS', 'LMSI_NUM_PROCESSES',
              'LMSI_PROCESS_ID'):
    env.pop(key, None)
  return env


def _run(cmd, devices):
  proc = subprocess.run(cmd, cwd=REPO, env=_env(devices), capture_output=True,
                        text=True, check=False, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def test_two_processes_equal_one_process_and_any_shard_count(trained_tiny,
                                                             tmp_path):
  root, _ = trained_tiny
  one = tmp_path / 'one'
  _run([sys.executable, '-m', 'lmsi.sample', *_flags(root, one)], devices=8)
  two = tmp_path / 'two'
  log = _run([sys.executable, os.path.join(REPO, 'launch', 'local.py'),
              '--num_processes=2', '--devices_per_process=4', '--',
              sys.executable, '-m', 'lmsi.sample', *_flags(root, two)],
             devices=4)
  assert '[p1]' in log
  assert sorted(p for p in os.listdir(two) if p.endswith('.jsonl')) == [
      'samples-00000-of-00002.jsonl', 'samples-00001-of-00002.jsonl']
  three = tmp_path / 'three'
  for i in range(3):
    _run([sys.executable, '-m', 'lmsi.sample',
          *_flags(root, three, [f'--gin.SHARD_INDEX={i}',
                                '--gin.NUM_SHARDS=3'])], devices=8)
  merged = [open(shards.merge(str(d)), "rb").read()
            for d in (one, two, three)]
  assert merged[0] == merged[1] == merged[2]
  paths = list(records.read_jsonl(str(one / 'samples.merged.jsonl'),
                                  records.SampledPath))
  assert len(paths) == 6 * 4


def test_truncated_shard_is_redone_not_merged(trained_tiny, tmp_path):
  root, _ = trained_tiny
  out = tmp_path / 'samples'
  flags = _flags(root, out)
  _run([sys.executable, '-m', 'lmsi.sample', *flags], devices=8)
  shard = out / 'samples-00000-of-00001.jsonl'
  good = shard.read_bytes()
  shard.write_bytes(good[:len(good) // 2])  # cut mid-line, marker kept
  assert not fileio.is_complete(str(shard))
  with pytest.raises(ValueError, match='corrupt or truncated'):
    shards.merge(str(out))
  _run([sys.executable, '-m', 'lmsi.sample', *flags], devices=8)
  assert shard.read_bytes() == good
  (out / 'samples-00001-of-00002.jsonl').write_text('')  # a stale sharding
  with pytest.raises(ValueError, match='shards of different shardings'):
    shards.merge(str(out))


def test_early_stopped_voting_draws_fewer_samples(trained_tiny):
  from lmsi.data import answers  # pylint: disable=g-import-not-at-top
  from lmsi.data import (  # pylint: disable=g-import-not-at-top
      exemplars as exemplars_lib)
  from lmsi.data import prompts  # pylint: disable=g-import-not-at-top
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      generation as sampling)
  from lmsi.vocab import (  # pylint: disable=g-import-not-at-top
      simple as vocab_lib)
  from lmsi.voting import (  # pylint: disable=g-import-not-at-top
      majority as voting)
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  root, params = trained_tiny
  vocab = vocab_lib.load(str(root / 'data' / 'vocab.json'))
  exemplars = exemplars_lib.get('arithmetic')
  questions = [f'Kim has {n} mugs. She buys 2. How many mugs now?'
               for n in (3, 4, 5, 6)]
  texts = [prompts.render('cot_fewshot', q, exemplars) for q in questions]
  ids = [f'q{i}' for i in range(4)]
  # A low temperature: the tiny model then agrees with itself early.
  config = sampling.SamplingConfig(num_samples=16, max_decode_steps=24,
                                   temperature=0.2)
  answer_of = lambda i, t: answers.extract_answer(t, 'number')
  full = stage.sample_prompts(
      tiny_config(), params, texts, ids, config, vocab=vocab,
      batch_questions=4, desc='full')
  early = stage.sample_prompts(
      tiny_config(), params, texts, ids, config, vocab=vocab,
      batch_questions=4, desc='early', answer_of=answer_of,
      early_stop_chunk=4)
  drawn = [len(e) for e in early]
  assert all(len(f) == 16 for f in full)
  assert min(drawn) < 16 and all(n % 4 == 0 for n in drawn)
  for f, e in zip(full, early):
    # The samples drawn are the full run's first ones (keyed by index), and
    # a question stopped early keeps the full run's majority answer.
    assert [t for t, _ in e] == [t for t, _ in f[:len(e)]]
    votes = [answer_of(0, t) for t, _ in e]
    if len(e) < 16:
      assert stage.decided(votes, 16)
      assert voting.majority_vote(votes).answer == voting.majority_vote(
          [answer_of(0, t) for t, _ in f]).answer
