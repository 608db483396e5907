"""Test setup: 8 fake CPU devices, repo on sys.path, a shared tiny model."""

import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Many tests (and the binaries they start as subprocesses, which inherit
# this environment) compile the same programs: one jax compilation cache per
# test session, empty at its start and removed at its end, so a run's time
# is still a cold run's. A size limit turns on jax's file lock, so that the
# processes of a multi-process test never read a half-written entry.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix='lmsi-test-jax-cache-')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
  os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(4 << 30))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'slow: over the `make test` budget; run by `make test-slow`')


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), 'shared', 'data')
# The benchmarks' release files: $LMSI_DATA_DIR, else ../shared/data.
DATA_DIR = os.environ.get('LMSI_DATA_DIR') or SHARED_DATA


def installed_weights(fetch) -> str:
  """`fetch()`'s path (`lmsi.interop.weights`), or the calling test module
  skipped with its message (how to install the package)."""
  try:
    return fetch()
  except FileNotFoundError as e:
    pytest.skip(str(e), allow_module_level=True)


def lmsi_logits(cfg, params, tokens, valid):
  """The decoder's logits, numpy [B, L, V]."""
  from lmsi.model import decoder  # pylint: disable=g-import-not-at-top
  return np.asarray(decoder.Decoder(cfg).apply({'params': params}, tokens,
                                               valid))


def transformers_logits(model, tokens, valid):
  """A transformers causal LM's float32 logits, numpy [B, L, V]."""
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    return model(input_ids=torch.tensor(tokens, dtype=torch.long),
                 attention_mask=torch.tensor(valid, dtype=torch.long)
                 ).logits.float().numpy()


def tiny_config():
  """The decoder config of gin/testing/tiny.gin (the production gin path)."""
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin.add_config_file_search_path(REPO)
  gin.parse_config_file(os.path.join(REPO, 'gin/testing/tiny.gin'))
  cfg = gin.query_parameter('%MODEL_CONFIG').scoped_configurable_fn()
  gin.clear_config()
  return cfg


@pytest.fixture(scope='session')
def tiny_cfg():
  return tiny_config()


EASY = dict(min_steps=1, max_steps=2, max_start=9, max_operand=9, max_total=20)


def write_arith_data(data_dir, sizes=None):
  """Writes small arithmetic splits (seed split easier, as in the demo)."""
  from lmsi.demo import arithmetic  # pylint: disable=g-import-not-at-top
  easy = arithmetic.Difficulty(**EASY)
  hard = arithmetic.Difficulty(min_steps=2, max_steps=3, max_start=20,
                               max_operand=9, max_total=40)
  sizes = sizes or {'seed': 200, 'seed_dev': 20, 'unlabeled': 12, 'test': 8}
  return arithmetic.write_splits(
      str(data_dir), sizes,
      {'seed': easy, 'seed_dev': easy, 'unlabeled': hard, 'test': hard})


def garbage_gold_copy(src_dir, dst_dir, split):
  """Copies the data dir `src_dir` to `dst_dir` with every gold answer and
  reasoning of `split` replaced by garbage (the no-gold tests: a stage that
  never reads gold writes byte-identical outputs from either copy)."""
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(src_dir, dst_dir)
  path = os.path.join(dst_dir, f'{split}.jsonl')
  with open(path, encoding='utf-8') as f:
    rows = [json.loads(line) for line in f]
  with open(path, 'w', encoding='utf-8') as f:
    for r in rows:
      r.update(answer='GARBAGE-' + r['id'], cot='no reasoning at all')
      f.write(json.dumps(r) + '\n')


def gemma_like_sentencepiece(tmp_path):
  """A small SentencePiece BPE model shaped like Gemma's: byte fallback, no
  dummy prefix, user-defined runs of spaces, BOS 2 / EOS 1 / pad 0."""
  spm = pytest.importorskip('sentencepiece')
  corpus = tmp_path / 'corpus.txt'
  corpus.write_text('\n'.join(f'Tom has {i} apples and  {i + 1}  pears.'
                              for i in range(300)))
  spm.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=str(tmp_path / 'bpe'), vocab_size=300,
      model_type='bpe', byte_fallback=True, add_dummy_prefix=False,
      split_digits=True, user_defined_symbols=['\u2581\u2581',
                                               '\u2581\u2581\u2581'],
      remove_extra_whitespaces=False, normalization_rule_name='identity',
      pad_id=0, eos_id=1, bos_id=2, unk_id=3)
  return tmp_path / 'bpe.model'


@pytest.fixture(scope='session')
def trained_tiny(tiny_cfg, tmp_path_factory):
  """A tiny model trained briefly on the seed split: it writes answers."""
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  from lmsi.checkpoints import (  # pylint: disable=g-import-not-at-top
      store as checkpoints)
  from lmsi.trainer import (  # pylint: disable=g-import-not-at-top
      trainer as train)
  root = tmp_path_factory.mktemp('trained_tiny')
  write_arith_data(root / 'data')
  arith_tasks.register(str(root / 'data'))
  train.train(model_config=tiny_cfg,
              mixture_or_task_name=arith_tasks.SEED_MIXTURE,
              task_feature_lengths={'inputs': 256, 'targets': 64},
              train_steps=120, model_dir=str(root / 'model'), batch_size=16,
              learning_rate=3e-3, optimizer='adamw', log_period=40,
              checkpoint_period=120)
  params = checkpoints.restore_params(tiny_cfg, str(root / 'model'))
  return root, params


class _RamGfile:
  """tf.io.gfile with `gs://` paths moved onto its in-memory `ram://`."""

  def __init__(self, gfile):
    self._gfile = gfile

  def __getattr__(self, name):
    fn = getattr(self._gfile, name)

    def call(*args, **kwargs):
      args = [a.replace('gs://', 'ram://', 1) if isinstance(a, str) else a
              for a in args]
      out = fn(*args, **kwargs)
      if name == 'glob':
        return [p.replace('ram://', 'gs://', 1) for p in out]
      if name == 'walk':
        return ((r.replace('ram://', 'gs://', 1), d, f) for r, d, f in out)
      return out
    return call


@pytest.fixture
def memory_gcs(monkeypatch):
  """A fresh `gs://` root that epath serves, through its TensorFlow backend
  (the one a TPU run uses), from tf.io.gfile's in-memory `ram://`
  filesystem: the URL code path without a network."""
  import uuid  # pylint: disable=g-import-not-at-top
  from etils.epath import backend  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class _RamBackend(backend._TfBackend):  # pylint: disable=protected-access

    @property
    def gfile(self):
      return _RamGfile(tf.io.gfile)

  monkeypatch.setattr(backend, 'tf_backend', _RamBackend())
  return f'gs://lmsi-test-{uuid.uuid4().hex}'
