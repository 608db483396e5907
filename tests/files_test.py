"""Local and URL paths through lmsi.files, and records written to a URL.

URL paths are exercised on tf.io.gfile's in-memory `ram://` filesystem, which
takes the same code path as `gs://` without a network.
"""

import os
import subprocess
import sys
import uuid

import pytest

from lmsi import files
from lmsi import records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=['local', 'ram'])
def root(request, tmp_path):
  if request.param == 'local':
    return str(tmp_path)
  return f'ram://lmsi-test-{uuid.uuid4().hex}'


@pytest.mark.parametrize('path, remote', [
    ('gs://bucket/lmsi/x.jsonl', True),
    ('ram://x', True),
    ('runs/demo', False),
    ('/abs/path:with:colons', False),
    ('C:/not/a/url', False),
])
def test_is_remote(path, remote):
  assert files.is_remote(path) is remote


def test_file_operations(root):
  d = os.path.join(root, 'a', 'b')
  files.makedirs(d)
  files.makedirs(d)  # Existing is fine.
  assert files.isdir(d)
  with files.open(os.path.join(d, 'x.tmp'), 'w') as f:
    f.write('héllo\nwörld\n')
    files.sync(f)
  files.rename(os.path.join(d, 'x.tmp'), os.path.join(d, 'x.txt'))
  assert files.listdir(d) == ['x.txt']
  assert not files.exists(os.path.join(d, 'x.tmp'))
  with files.open(os.path.join(d, 'x.txt')) as f:
    assert list(f) == ['héllo\n', 'wörld\n']
  with files.open(os.path.join(d, 'y.txt'), 'w') as f:
    f.write('new')
  files.rename(os.path.join(d, 'y.txt'), os.path.join(d, 'x.txt'))  # Replaces.
  with files.open(os.path.join(d, 'x.txt'), 'rb') as f:
    assert f.read() == b'new'
  assert files.listdir(os.path.join(root, 'a')) == ['b']
  assert files.glob(os.path.join(root, 'a', '*', 'x.*')) == [
      os.path.join(d, 'x.txt')]
  files.remove(os.path.join(d, 'x.txt'))
  assert not files.exists(os.path.join(d, 'x.txt'))
  with pytest.raises(FileNotFoundError):
    files.remove(os.path.join(d, 'x.txt'))


def test_records_roundtrip_marker_and_rewrite(root):
  path = os.path.join(root, 'samples', 'q.jsonl')
  qs = [records.Question(task='t', id=f'q{i}', question=f'{i}?')
        for i in range(3)]
  assert records.write_jsonl(path, qs) == 3
  assert records.is_complete(path)
  assert list(records.read_jsonl(path, records.Question)) == qs
  assert records.write_jsonl(path, qs[:1]) == 1  # Rewrite: marker redone.
  assert list(records.read_jsonl(path, records.Question)) == qs[:1]
  assert files.listdir(os.path.dirname(path)) == ['q.jsonl',
                                                  'q.jsonl.COMPLETED']
  records.write_json(os.path.join(root, 'm.json'), {'b': 1})
  with files.open(os.path.join(root, 'm.json')) as f:
    assert f.read() == '{\n  "b": 1\n}\n'
  records.write_text_atomic(os.path.join(root, 'd.jsonl'), '{"b": 1}\n')
  assert list(records.read_jsonl_dicts(os.path.join(root, 'd.jsonl'))) == [
      {'b': 1}]


def test_missing_marker_on_url_is_an_error():
  path = f'ram://lmsi-test-{uuid.uuid4().hex}/q.jsonl'
  records.write_text_atomic(path, '{}\n')
  with pytest.raises(FileNotFoundError, match='COMPLETED'):
    list(records.read_jsonl(path, records.Question))


def test_local_paths_do_not_import_tensorflow(tmp_path):
  code = ('import sys\n'
          'from lmsi import records\n'
          f'records.write_jsonl({str(tmp_path / "q.jsonl")!r}, [])\n'
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
  subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True,
                 timeout=120)
