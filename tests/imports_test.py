"""The import rules of lmsi/ (tests/layering.py): layers, commands on top,
no cycles, no lmsi -> tasks import, no use of another module's `_private`
names; and what importing a package loads.

Read with `ast` (nothing of lmsi is imported for the rules). The checker's
own tests run it on synthetic packages written to a temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from lmsi.data import taskspec
from tests import layering
from tests.conftest import REPO


def test_lmsi_bench_tools_and_tests_keep_the_rules():
  broken = layering.check(REPO)
  assert broken == [], 'import rules broken:\n' + '\n'.join(broken)


def test_every_subpackage_has_a_layer_and_a_curated_init():
  for name in sorted(os.listdir(os.path.join(REPO, 'lmsi'))):
    init = os.path.join(REPO, 'lmsi', name, '__init__.py')
    if not os.path.isfile(init):
      continue
    layering.layer_of(name)  # KeyError names a package without a layer
    with open(init, encoding='utf-8') as f:
      text = f.read()
    assert '__all__' in text, f'lmsi/{name}/__init__.py has no __all__'
    assert text.startswith('"""'), f'lmsi/{name}/__init__.py: no docstring'


def test_commands_are_thin_entries():
  """A command is its entry: no function or class of its own but main."""
  import ast  # pylint: disable=g-import-not-at-top
  for command in sorted(layering.COMMANDS):
    with open(os.path.join(REPO, 'lmsi', f'{command}.py'),
              encoding='utf-8') as f:
      tree = ast.parse(f.read())
    defined = [n.name for n in tree.body
               if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert set(defined) <= {'main', '_define_flags'}, (command, defined)


def _package(root, files: dict[str, str]) -> str:
  for rel, text in files.items():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
      f.write(textwrap.dedent(text))
  return str(root)


CLEAN = {
    'lmsi/__init__.py': '',
    'lmsi/sample.py': 'from lmsi.sampling import shard\n',
    'lmsi/runtime/__init__.py': '',
    'lmsi/runtime/fileio.py': 'def write(): pass\n',
    'lmsi/data/__init__.py': '',
    'lmsi/data/records.py': 'from lmsi.runtime import fileio\n',
    'lmsi/sampling/__init__.py': '',
    'lmsi/sampling/shard.py': '''\
        from lmsi.data import records
        from lmsi.runtime.fileio import write
        ''',
    'lmsi/sampling/kernels.py': '''\
        def prefill(): pass
        def _private(): pass
        def use(): return _private()
        ''',
    'tasks/__init__.py': '',
    'tasks/t.py': 'from lmsi.data import records\n',
}


def test_checker_passes_a_clean_package(tmp_path):
  assert layering.check(_package(tmp_path, CLEAN), ('lmsi', 'tasks')) == []


@pytest.mark.parametrize('path, source, expected', [
    ('lmsi/runtime/fileio.py', 'from lmsi.data import records\n',
     'lmsi.runtime.fileio (layer 0, runtime) imports lmsi.data.records '
     '(layer 1, data): an upward import'),
    ('lmsi/runtime/fileio.py',  # inside a function counts
     'def f():\n  from lmsi.sampling import kernels\n',
     'lmsi.runtime.fileio (layer 0, runtime) imports lmsi.sampling.kernels '
     '(layer 2, sampling): an upward import'),
    ('lmsi/data/records.py',  # under TYPE_CHECKING counts
     'import typing\nif typing.TYPE_CHECKING:\n'
     '  import lmsi.sampling.kernels\n',
     'lmsi.data.records (layer 1, data) imports lmsi.sampling.kernels '
     '(layer 2, sampling): an upward import'),
    ('lmsi/sampling/kernels.py', 'from lmsi import sample\n',
     'lmsi.sampling.kernels imports the command lmsi.sample: commands sit '
     'on top, libraries never import them'),
    ('lmsi/data/records.py', 'from lmsi.sampling import kernels\n'
     'kernels._private()\n',
     'lmsi.data.records:2 uses lmsi.sampling.kernels._private'),
    ('lmsi/sampling/shard.py', 'from lmsi.sampling.kernels import _private\n',
     'lmsi.sampling.shard:1 uses lmsi.sampling.kernels._private'),
    ('lmsi/sampling/shard.py', 'from lmsi.sampling import kernels as k\n'
     "setattr(k, '_private', None)\n",
     'lmsi.sampling.shard:2 uses lmsi.sampling.kernels._private'),
    ('lmsi/data/records.py', 'import tasks.t\n',
     'lmsi.data.records imports tasks.t: lmsi/ never imports tasks/'),
    ('lmsi/runtime/fileio.py', 'from lmsi.runtime import other\n',
     'import cycle: lmsi.runtime.fileio -> lmsi.runtime.other -> '
     'lmsi.runtime.fileio'),
])
def test_checker_catches_each_broken_rule(tmp_path, path, source, expected):
  files = dict(CLEAN, **{path: source})
  if 'other' in source:
    files['lmsi/runtime/other.py'] = 'from lmsi.runtime import fileio\n'
  broken = layering.check(_package(tmp_path, files), ('lmsi', 'tasks'))
  assert any(line.startswith(expected) for line in broken), broken


def test_checker_catches_a_subpackage_cycle(tmp_path):
  files = dict(CLEAN, **{
      'lmsi/voting/__init__.py': '',
      'lmsi/voting/majority.py': 'from lmsi.sampling import kernels\n',
      'lmsi/sampling/kernels.py': 'from lmsi.voting import x\n',
      'lmsi/voting/x.py': '',
  })
  broken = layering.check(_package(tmp_path, files), ('lmsi',))
  assert 'subpackage cycle: sampling -> voting -> sampling' in broken, broken


def test_find_cycle():
  cyclic = {'lmsi.a': {'lmsi.b'}, 'lmsi.b': {'lmsi.c'},
            'lmsi.c': {'lmsi.a'}, 'lmsi.d': set()}
  assert layering.find_cycle(cyclic) == ['lmsi.a', 'lmsi.b', 'lmsi.c',
                                         'lmsi.a']
  assert layering.find_cycle({'lmsi.a': {'lmsi.b'}, 'lmsi.b': set()}) is None


def test_graph_reads_the_real_tree():
  _, parsed = layering.graph_of(REPO, ('lmsi', 'tasks'))
  assert 'lmsi.data.shards' in parsed['lmsi.sampling.shard'].imports
  assert 'lmsi.data.taskspec' in parsed['tasks.releases'].imports
  assert 'lmsi.sampling.shard' in parsed['lmsi.sample'].imports


def _loaded_after(statement: str) -> set[str]:
  code = (f'import sys\n{statement}\n'
          "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))")
  out = subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True,
                       capture_output=True, text=True, timeout=120)
  return set(out.stdout.split())


def test_importing_data_loads_no_seqio_or_tensorflow():
  loaded = _loaded_after('import lmsi.data\nfrom lmsi.data import prompts, '
                         'records, answers, taskspec')
  assert not loaded & {'seqio', 'tensorflow'}, loaded & {'seqio',
                                                         'tensorflow'}


def test_importing_a_package_or_the_report_loads_no_jax():
  loaded = _loaded_after(
      'import lmsi, lmsi.sampling, lmsi.model, lmsi.trainer, lmsi.studies\n'
      'from lmsi.studies import report')
  assert 'jax' not in loaded


def test_old_flat_names_import_as_their_new_modules():
  code = ('import warnings\nwarnings.simplefilter("error")\n'
          'try:\n  from lmsi import decoder\nexcept DeprecationWarning as e:\n'
          '  print(e)\n'
          'warnings.simplefilter("ignore")\n'
          'import lmsi.decoder, lmsi.model.decoder as new\n'
          'assert lmsi.decoder is new\n'
          'assert new.__spec__.name == "lmsi.model.decoder"\n')
  out = subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True,
                       capture_output=True, text=True, timeout=120)
  assert 'lmsi.decoder moved to lmsi.model.decoder' in out.stdout


def test_unregistered_builder_names_the_module_to_import():
  with pytest.raises(LookupError, match=r'import tasks\.nope or add '
                     r'`import tasks\.nope` to your gin file'):
    taskspec.builder('nope')
