"""Bad inputs fail early, naming the file, line and field; no pickles.

One test per bad input; each asserts that the message names where the
problem is. `pytest -s` prints every message (`MESSAGE ...`). The gin flag
and gin file errors are tested in `tests/gin_test.py`. The last tests check
the stage manifests and that a finished run holds no pickle.
"""

import errno
import glob
import json
import os
import shutil
import subprocess

import jax
import numpy as np
import pytest

from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder
from lmsi.data import inputs
from lmsi.data import records
from lmsi.runtime import fileio
from lmsi.data import taskspec
from lmsi.trainer import trainer as train
from lmsi.vocab import simple as vocab_lib
from tests.conftest import REPO
from tests.conftest import SHARED_DATA
from tests.conftest import write_arith_data

SIZES = {'seed': 16, 'seed_dev': 2, 'unlabeled': 2, 'test': 2}


def _message(name: str, excinfo) -> str:
  text = str(excinfo.value)
  print(f'MESSAGE {name}: {type(excinfo.value).__name__}: {text}')
  return text


def _path(i: int = 1, **changes) -> str:
  """A SampledPath JSON line; a change to `...` drops that field."""
  rec = {'task': 't', 'id': f'q{i}', 'sample': 0, 'text': 'The answer is 3.',
         'answer': '3', 'logprob': -1.5, **changes}
  return json.dumps({k: v for k, v in rec.items() if v is not ...})


@pytest.fixture(scope='module')
def arith(tmp_path_factory):
  """Registered arithmetic tasks over small splits; returns the data dir."""
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  data = tmp_path_factory.mktemp('data')
  write_arith_data(data, SIZES)
  arith_tasks.register(str(data))
  return data


@pytest.fixture(scope='module')
def saved(tiny_cfg, tmp_path_factory):
  """A tiny model's init params saved as `<dir>/checkpoints/0`."""
  root = tmp_path_factory.mktemp('saved')
  checkpoints.save_params(str(root), decoder.init_params(tiny_cfg)[0])
  return root


# Item 3: one test per bad input.


def test_malformed_jsonl_line(tmp_path):
  path = tmp_path / 'samples-00000-of-00001.jsonl'
  path.write_text(_path(1) + '\n' + _path(2)[:-9] + '\n')
  (tmp_path / (path.name + fileio.MARKER)).write_text('')  # legacy marker
  with pytest.raises(ValueError) as e:
    list(records.read_jsonl(str(path), records.SampledPath))
  assert f'{path}:2: malformed JSON' in _message('malformed line', e)


@pytest.mark.parametrize('line, field, want', [
    (_path(answer=...), 'answer', 'missing'),
    (_path(sample='3'), 'sample', 'must be int'),
    (_path(logprob=True), 'logprob', 'must be float'),
    (_path(answer=7), 'answer', 'must be str | None'),
], ids=['missing', 'str_for_int', 'bool_for_float', 'int_for_str'])
def test_missing_or_wrong_typed_record_field(tmp_path, line, field, want):
  path = str(tmp_path / 'samples-00000-of-00001.jsonl')
  fileio.write_text_atomic(path, _path(0) + '\n' + line + '\n')
  fileio.write_text_atomic(path + fileio.MARKER, '')
  with pytest.raises(ValueError) as e:
    list(records.read_jsonl(path, records.SampledPath))
  text = _message(f'record field {field} ({want})', e)
  assert text.startswith(f'{path}:2: ')
  assert f"'{field}'" in text and want in text


@pytest.mark.parametrize('raw, want', [
    ({'question': 'Q?'}, "missing field 'answer'"),
    ({'question': 3, 'answer': '#### 3'}, "field 'question' must be a str"),
    ({'question': 'Q?', 'answer': 'no final line'}, "field 'answer' has no"),
], ids=['missing', 'wrong_type', 'bad_value'])
def test_bad_release_file_field(tmp_path, raw, want):
  from tasks import gsm8k  # pylint: disable=g-import-not-at-top
  from tasks import releases  # pylint: disable=g-import-not-at-top
  os.makedirs(tmp_path / 'gsm8k')
  good = json.dumps({'question': 'Ann has 2 pens. How many?',
                     'answer': 'She has 2.\n#### 2'})
  for split in gsm8k.SPLITS:
    (tmp_path / 'gsm8k' / f'{split}.jsonl').write_text(
        f'{good}\n{json.dumps(raw)}\n')
  try:
    gsm8k.register(str(tmp_path))
    with pytest.raises(ValueError) as e:
      inputs.load_split(gsm8k.TASK, 'test')
  finally:  # point gsm8k back at the real files, as other tests expect
    data = os.environ.get(releases.DATA_DIR_ENV) or SHARED_DATA
    if os.path.isdir(os.path.join(data, 'gsm8k')):
      gsm8k.register(data)
    else:
      import seqio  # pylint: disable=g-import-not-at-top
      for name in (gsm8k.TASK, gsm8k.POOL):
        seqio.TaskRegistry.remove(name)
        taskspec.SPECS.pop(name, None)
  text = _message(f'release field ({want})', e)
  assert text.startswith(f'{tmp_path}/gsm8k/test.jsonl:2: ')
  assert want in text


def test_missing_data_directory(tmp_path):
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  from tasks import gsm8k  # pylint: disable=g-import-not-at-top
  missing = str(tmp_path / 'nope')
  with pytest.raises(FileNotFoundError) as e:
    gsm8k.register(missing)
  text = _message('missing benchmark data dir', e)
  assert missing in text and 'gsm8k/{train,test}.jsonl' in text
  with pytest.raises(FileNotFoundError) as e:
    arith_tasks.register(missing)
  assert missing in _message('missing arithmetic data dir', e)


def test_unknown_task_or_mixture_suggests_close_names(arith, tiny_cfg,
                                                      tmp_path):
  del arith  # registers lmsi_arith_v1 and lmsi_arith_seed_v1
  from tasks import mixtures  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError) as e:
    inputs.load_split('lmsi_arith_v2', 'test')
  text = _message('unknown task', e)
  assert "'lmsi_arith_v2'" in text and "'lmsi_arith_v1'" in text
  with pytest.raises(ValueError) as e:
    mixtures.registered('lmsi_arith_seed_v2')
  assert "did you mean one of ['lmsi_arith_seed_v1'" in _message(
      'unknown mixture (gin TASK)', e)
  with pytest.raises(ValueError) as e:  # before any init or compile
    train.train(model_config=tiny_cfg, mixture_or_task_name='lmsi_arith_sed_v1',
                task_feature_lengths={'inputs': 8, 'targets': 8},
                train_steps=1, model_dir=str(tmp_path / 'm'))
  assert "'lmsi_arith_seed_v1'" in _message('unknown train mixture', e)


def test_checkpoint_shape_mismatch(tiny_cfg, saved):
  import dataclasses  # pylint: disable=g-import-not-at-top
  wider = dataclasses.replace(tiny_cfg, mlp_dim=tiny_cfg.mlp_dim * 2)
  with pytest.raises(ValueError) as e:
    checkpoints.restore_params(wider, str(saved))
  text = _message('checkpoint shape mismatch', e)
  assert text.startswith(f'checkpoint {saved}/checkpoints/0/params does not '
                         'match the model config: layer_0.mlp.down: stored '
                         '(64, 32), config (128, 32); ')
  assert '(and 2 more)' in text


def _largest_data_file(params_dir: str) -> str:
  return max(glob.glob(os.path.join(params_dir, '**', 'd', '*'),
                       recursive=True), key=os.path.getsize)


# Orbax leaves the failed reads' coroutines unawaited; that is its noise.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
@pytest.mark.parametrize('damage', ['truncate_data', 'delete_data',
                                    'truncate_metadata', 'flip_data'])
def test_corrupt_or_truncated_checkpoint(tiny_cfg, saved, tmp_path, damage):
  shutil.copytree(saved, tmp_path, dirs_exist_ok=True)
  params_dir = str(tmp_path / 'checkpoints' / '0' / 'params')
  if damage == 'truncate_data':
    os.truncate(_largest_data_file(params_dir), 10)
  elif damage == 'delete_data':
    os.remove(_largest_data_file(params_dir))
  elif damage == 'flip_data':  # same size: only the digests can tell
    path = _largest_data_file(params_dir)
    with open(path, 'r+b') as f:
      f.seek(os.path.getsize(path) // 2)
      byte = f.read(1)
      f.seek(-1, 1)
      f.write(bytes([byte[0] ^ 0x10]))
  else:
    os.truncate(os.path.join(params_dir, '_METADATA'), 10)
  with pytest.raises(ValueError) as e:
    checkpoints.restore_params(tiny_cfg, str(tmp_path))
  text = _message(f'corrupt checkpoint ({damage})', e)
  assert f'checkpoint {params_dir} is corrupt or truncated' in text
  assert f'delete {tmp_path}/checkpoints/0 to fall back' in text
  if damage == 'flip_data':
    assert 'sha256 differs from' in text


def test_truncated_output_shard(tmp_path):
  path = str(tmp_path / 'selfgen.jsonl')
  fileio.write_jsonl(path, [records.Question(task='t', id=f'q{i}',
                                              question='?') for i in range(3)])
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) - 5)
  assert not fileio.is_complete(path)  # so its stage redoes it
  with pytest.raises(ValueError) as e:
    list(records.read_jsonl(path, records.Question))
  text = _message('truncated output shard', e)
  assert text.startswith(f'{path}: corrupt or truncated')
  assert 'delete it to redo its stage' in text


def test_flipped_byte_in_a_finished_output_is_redone(tmp_path, caplog):
  """A same-size bit flip in a stage's own output: `is_complete` checks the
  marker's sha256, so the stage redoes the file instead of trusting it."""
  path = str(tmp_path / 'samples-00000-of-00001.jsonl')
  fileio.write_jsonl(path, [records.Question(task='t', id=f'q{i}',
                                              question='?') for i in range(3)])
  assert fileio.is_complete(path)
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    f.seek(size // 2)
    byte = f.read(1)
    f.seek(size // 2)
    f.write(bytes([byte[0] ^ 0x01]))
  assert os.path.getsize(path) == size
  assert not fileio.is_complete(path)
  print(f'MESSAGE flipped byte in a finished output: '
        f'{caplog.records[-1].getMessage()}')
  assert 'differ from its .COMPLETED marker' in caplog.text


def test_flipped_byte_in_an_eval_file_is_redone(tmp_path):
  """eval.json, like every JSON output (`fileio.write_json`), gets the
  marker (bytes, sha256) every JSONL output has."""
  path = str(tmp_path / 'eval.json')
  fileio.write_json(path, {'accuracy': {'greedy_cot': 0.25}})
  assert fileio.is_complete(path)
  text = open(path).read().replace('0.25', '0.75')
  with open(path, 'w') as f:
    f.write(text)
  assert not fileio.is_complete(path)


def test_tokenizer_vocabulary_size_mismatch(tmp_path):
  path = str(tmp_path / 'vocab.json')
  fileio.write_json(path, {'pieces': [f' w{i}' for i in range(20)]})
  vocab = vocab_lib.load(path)
  with pytest.raises(ValueError) as e:
    vocab_lib.check_model_vocab(vocab, 259, path)
  text = _message('tokenizer/model vocab mismatch', e)
  assert text.startswith(f'{path}: the tokenizer has 279 tokens')
  assert 'vocab_size=259' in text


def test_nan_loss_stops_and_keeps_last_good_checkpoint(arith, tiny_cfg,
                                                       tmp_path):
  del arith
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / 'model')
  # lr 1e30: step 1's update makes the weights ~1e30 (finite: saved); step
  # 2's gradient overflows, so its update makes them NaN.
  with pytest.raises(FloatingPointError) as e:
    train.train(model_config=tiny_cfg,
                mixture_or_task_name=arith_tasks.SEED_MIXTURE,
                task_feature_lengths={'inputs': 128, 'targets': 32},
                train_steps=3, model_dir=model_dir, batch_size=8,
                learning_rate=1e30, optimizer='adamw', log_period=1,
                checkpoint_period=1)
  text = _message('NaN/Inf', e)
  assert f'parameters are not finite at step 2 in {model_dir}' in text
  assert 'the last good checkpoint, step 1, is kept' in text
  assert sorted(os.listdir(os.path.join(model_dir, 'checkpoints'))) == ['1']
  assert not os.path.exists(os.path.join(model_dir, 'train_done.json'))
  kept = checkpoints.restore_params(tiny_cfg, model_dir)
  assert all(np.isfinite(np.asarray(x)).all()
             for x in jax.tree_util.tree_leaves(kept))


def test_disk_full_keeps_the_old_file(tmp_path, monkeypatch):
  path = str(tmp_path / 'out' / 'eval.json')
  fileio.write_json(path, {'old': 1})

  def full(f):
    f.flush()
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(fileio, 'sync', full)
  with pytest.raises(OSError) as e:
    fileio.write_json(path, {'new': 2})
  text = _message('disk full', e)
  assert e.value.errno == errno.ENOSPC
  assert text.endswith(f'cannot write {path}: disk full (in {tmp_path}/out); '
                       'free space or choose another output directory; files '
                       'already there are intact')
  assert json.load(open(path)) == {'old': 1}
  assert os.listdir(tmp_path / 'out') == ['eval.json']  # no temp file left


def _make_unwritable(root: str, monkeypatch) -> None:
  """chmod 0o500, or, as root (who ignores it), fail writes under `root`."""
  os.makedirs(root)
  os.chmod(root, 0o500)
  if not os.access(root, os.W_OK):
    return
  real_makedirs, real_open = os.makedirs, open

  def deny(path):
    if os.path.abspath(str(path)).startswith(root + os.sep):
      raise PermissionError(errno.EACCES, 'Permission denied', str(path))

  def makedirs(path, *args, **kwargs):
    if not os.path.isdir(path):
      deny(path)
    return real_makedirs(path, *args, **kwargs)

  def open_(path, mode='r', *args, **kwargs):
    if any(c in mode for c in 'wax+'):
      deny(path)
    return real_open(path, mode, *args, **kwargs)

  monkeypatch.setattr(os, 'makedirs', makedirs)
  monkeypatch.setattr('builtins.open', open_)


def test_unwritable_output_directory(arith, tiny_cfg, tmp_path, monkeypatch,
                                     request):
  del arith
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / 'readonly')
  _make_unwritable(root, monkeypatch)
  request.addfinalizer(lambda: os.chmod(root, 0o700))  # so tmp is cleaned
  with pytest.raises(PermissionError) as e:  # a new directory below it
    train.train(model_config=tiny_cfg,
                mixture_or_task_name=arith_tasks.SEED_MIXTURE,
                task_feature_lengths={'inputs': 8, 'targets': 8},
                train_steps=1, model_dir=os.path.join(root, 'model'))
  text = _message('unwritable MODEL_DIR parent', e)
  assert f'cannot write {root}/model: permission denied (in {root})' in text
  with pytest.raises(PermissionError) as e:  # the directory itself
    train.train(model_config=tiny_cfg,
                mixture_or_task_name=arith_tasks.SEED_MIXTURE,
                task_feature_lengths={'inputs': 8, 'targets': 8},
                train_steps=1, model_dir=root)
  text = _message('unwritable MODEL_DIR', e)
  assert (f'cannot write {root}/train_manifest.json: permission denied (in '
          f'{root}); make it writable or choose another') in text
  assert os.listdir(root) == []


# Items 4 and 5: a small finished run, its manifests, no pickles.


@pytest.fixture(scope='module')
def run_dir(arith, tiny_cfg, tmp_path_factory):
  """Train -> sample -> aggregate, through the binaries' bodies.

  (Evaluation writes json/jsonl through `records` as these do; it is left
  out to keep this file fast.)
  """
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  from lmsi.voting import (  # pylint: disable=g-import-not-at-top
      aggregation as aggregate)
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      shard as sample)
  from lmsi.sampling import (  # pylint: disable=g-import-not-at-top
      generation as sampling)
  out = tmp_path_factory.mktemp('run')
  train.train(model_config=tiny_cfg,
              mixture_or_task_name=arith_tasks.SEED_MIXTURE,
              task_feature_lengths={'inputs': 128, 'targets': 32},
              train_steps=1, model_dir=str(out / 'model'), batch_size=8,
              learning_rate=1e-3, optimizer='adamw', log_period=1)
  task = dict(task_name=arith_tasks.TASK, exemplars='arithmetic',
              answer_family='number',
              vocabulary=str(arith / 'vocab.json'))
  sample.sample_task(
      model_config=tiny_cfg, checkpoint_path=str(out / 'model'),
      split='unlabeled', output_dir=str(out / 'samples'),
      sampling_config=sampling.SamplingConfig(num_samples=2,
                                              max_decode_steps=8), **task)
  del task['vocabulary']
  aggregate.aggregate_task(samples_dir=str(out / 'samples'),
                           split='unlabeled', output_dir=str(out / 'selfgen'),
                           no_vote=True, **task)
  return out


def test_stage_manifests(run_dir):
  from lmsi.runtime import manifests  # pylint: disable=g-import-not-at-top
  sel = json.load(open(run_dir / 'selfgen' / 'aggregate_manifest.json'))
  shard = str(run_dir / 'samples' / 'samples-00000-of-00001.jsonl')
  assert sel['inputs'] == [{'path': shard, 'kind': 'file',
                            'bytes': os.path.getsize(shard),
                            'sha256': manifests.file_sha256(shard)}]
  try:  # the checkout's HEAD, asked of git directly
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, text=True,
                          capture_output=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    head = 'unknown'
  assert sel['git_revision'].removesuffix('+dirty') == head
  assert {'questions', 'samples', 'unparseable', 'paths_kept'} <= set(
      sel['counts'])
  assert sel['counts']['samples'] == 2 * SIZES['unlabeled']
  assert sel['choices']['top_k'] == 40  # from sample_manifest.json
  assert {'tie_rule', 'unparseable', 'mixing_rates'} <= set(sel['choices'])
  tr = json.load(open(run_dir / 'model' / 'train_manifest.json'))
  assert tr['mixing_rates'] == {f'lmsi_arith_seed_{f}_v1': 1.0 for f in (
      'cot_fewshot', 'cot_zeroshot', 'direct_fewshot', 'direct_zeroshot')}
  assert (tr['optimizer'], tr['learning_rate'], tr['batch_size'],
          tr['train_steps']) == ('adamw', 1e-3, 8, 1)
  assert tr['inputs'] == [] and tr['initial_checkpoint'] is None
  assert tr['git_revision'] == sel['git_revision']


def test_finished_run_holds_no_pickle(run_dir):
  found = []
  for root, _, names in os.walk(run_dir):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        head = f.read(2)
      found.append(os.path.relpath(path, run_dir))
      assert not name.endswith(('.pkl', '.pickle')), path
      assert head not in (b'\x80\x02', b'\x80\x03', b'\x80\x04',
                          b'\x80\x05'), f'{path} starts like a pickle'
  for want in ('model/checkpoints/1/params/_METADATA',
               'model/train_manifest.json', 'samples/sample_manifest.json',
               'selfgen/selfgen.jsonl', 'selfgen/aggregate_manifest.json'):
    assert want in found, (want, sorted(found))
