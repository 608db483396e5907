"""Local and gs:// paths through etils.epath, and records written to gs://.

gs:// paths go through epath's TensorFlow backend, as on a TPU pod, onto
tf.io.gfile's in-memory `ram://` filesystem (the `memory_gcs` fixture), so
no network is needed.
"""

import errno
import os
import subprocess
import sys

import pytest
from etils import epath

from lmsi.data import records

from lmsi.runtime import fileio
from lmsi.data import shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=['local', 'gs'])
def root(request, tmp_path):
  if request.param == 'local':
    return str(tmp_path)
  return request.getfixturevalue('memory_gcs')


@pytest.mark.parametrize('path, remote', [
    ('gs://bucket/lmsi/x.jsonl', True),
    ('ram://x', True),
    ('runs/demo', False),
    ('/abs/path:with:colons', False),
    ('C:/not/a/url', False),
])
def test_is_remote(path, remote):
  assert fileio.is_remote(path) is remote


def test_file_operations(root):
  """The epath calls lmsi relies on, on both backends."""
  d = os.path.join(root, 'a', 'b')
  fileio.makedirs(d)
  fileio.makedirs(d)  # Existing is fine.
  assert epath.Path(d).is_dir()
  with epath.Path(d, 'x.tmp').open('w') as f:
    f.write('héllo\nwörld\n')
    fileio.sync(f)
  epath.Path(d, 'x.tmp').replace(os.path.join(d, 'x.txt'))
  assert [p.name for p in epath.Path(d).iterdir()] == ['x.txt']
  assert not epath.Path(d, 'x.tmp').exists()
  with epath.Path(d, 'x.txt').open() as f:
    assert list(f) == ['héllo\n', 'wörld\n']
  assert epath.Path(d, 'x.txt').stat().length == len(
      'héllo\nwörld\n'.encode())
  with epath.Path(d, 'y.txt').open('w') as f:
    f.write('new')
  epath.Path(d, 'y.txt').replace(os.path.join(d, 'x.txt'))  # Replaces.
  with epath.Path(d, 'x.txt').open('rb') as f:
    assert f.read() == b'new'
  assert [p.name for p in epath.Path(root, 'a').iterdir()] == ['b']
  assert [str(p) for p in epath.Path(root, 'a').glob('*/x.*')] == [
      os.path.join(d, 'x.txt')]
  walked = [(os.path.relpath(str(r), root), sorted(fs))
            for r, _, fs in epath.Path(root).walk()]
  assert sorted(walked) == [('.', []), ('a', []), ('a/b', ['x.txt'])]
  epath.Path(d, 'x.txt').unlink()
  assert not epath.Path(d, 'x.txt').exists()
  with pytest.raises(FileNotFoundError):
    epath.Path(d, 'x.txt').unlink()


def test_records_roundtrip_marker_and_rewrite(root):
  path = os.path.join(root, 'samples', 'q.jsonl')
  qs = [records.Question(task='t', id=f'q{i}', question=f'{i}?')
        for i in range(3)]
  assert fileio.write_jsonl(path, qs) == 3
  assert fileio.is_complete(path)
  assert list(records.read_jsonl(path, records.Question)) == qs
  assert fileio.write_jsonl(path, qs[:1]) == 1  # Rewrite: marker redone.
  assert list(records.read_jsonl(path, records.Question)) == qs[:1]
  assert sorted(p.name for p in epath.Path(path).parent.iterdir()) == [
      'q.jsonl', 'q.jsonl.COMPLETED']
  fileio.write_json(os.path.join(root, 'm.json'), {'b': 1})
  with epath.Path(root, 'm.json').open() as f:
    assert f.read() == '{\n  "b": 1\n}\n'
  fileio.write_text_atomic(os.path.join(root, 'd.jsonl'), '{"b": 1}\n')
  assert list(fileio.read_jsonl_dicts(os.path.join(root, 'd.jsonl'))) == [
      {'b': 1}]


def test_shards_on_both_backends(root):
  out = os.path.join(root, 'samples')
  for i in (1, 0):
    fileio.write_jsonl(shards.shard_path(out, i, 2), [])
  assert shards.shard_paths(out) == [shards.shard_path(out, i, 2)
                                     for i in (0, 1)]


@pytest.mark.skipif(os.geteuid() != 0, reason='chown needs root')
def test_size_of_a_file_whose_owner_has_no_user_name(tmp_path):
  path = str(tmp_path / 'q.jsonl')
  fileio.write_jsonl(path, [records.Question(task='t', id='q', question='?')])
  os.chown(path, 54321, 54321)  # a uid with no passwd entry
  assert fileio.size(path) == os.path.getsize(path) > 0
  assert fileio.is_complete(path)


def test_missing_marker_on_url_is_an_error(memory_gcs):
  path = f'{memory_gcs}/q.jsonl'
  fileio.write_text_atomic(path, '{}\n')
  with pytest.raises(FileNotFoundError, match='COMPLETED'):
    list(records.read_jsonl(path, records.Question))


@pytest.mark.parametrize('code, named', [
    (errno.ENOSPC, True), (errno.EACCES, True), (errno.ENOENT, False)])
def test_write_error_names_the_path(code, named):
  e = OSError(code, os.strerror(code))
  err = fileio.write_error(e, 'out/eval.json')
  assert (err is not e) is named and err.errno == code
  if named:
    assert str(err).startswith(f'[Errno {code}] cannot write out/eval.json: ')
    assert '(in out)' in str(err)


def test_local_paths_do_not_import_tensorflow(tmp_path):
  code = ('import sys\n'
          'from lmsi.data import shards\n'
          'from lmsi.runtime import fileio\n'
          f'path = shards.shard_path({str(tmp_path)!r}, 0, 1)\n'
          'fileio.write_jsonl(path, [])\n'
          'assert fileio.is_complete(path)\n'
          f'assert shards.shard_paths({str(tmp_path)!r}) == [path]\n'
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
  subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True,
                 timeout=120)


def test_a_gs_vocabulary_loads_on_every_worker(memory_gcs, tmp_path,
                                               monkeypatch):
  """VOCABULARY on gs:// (where every host of a pod reads it): the file and
  the config beside it are copied to a local cache, then loaded as locally
  (a WordVocab here; a tokenizer.json / tokenizer.model the same way)."""
  # pylint: disable-next=g-import-not-at-top
  from lmsi.vocab import simple as vocab_lib
  monkeypatch.setenv('LMSI_CACHE_DIR', str(tmp_path / 'cache'))
  local = tmp_path / 'vocab.json'
  vocab_lib.WordVocab(['Ann', ' has', ' 3']).save(str(local))
  url = f'{memory_gcs}/tok/vocab.json'
  fileio.makedirs(os.path.dirname(url))
  data = local.read_bytes()
  fileio.write_atomic(url, lambda f: f.write(data), binary=True)
  remote = vocab_lib.load(url)
  assert remote.fingerprint() == vocab_lib.load(str(local)).fingerprint()
  assert remote.decode(remote.encode('Ann has 3 pens')) == 'Ann has 3 pens'
  with pytest.raises(FileNotFoundError, match='no such file'):
    vocab_lib.load(f'{memory_gcs}/tok/missing.json')
