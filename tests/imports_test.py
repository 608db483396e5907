"""The import graph of lmsi/ and tasks/: no cycles, lmsi never imports tasks.

Read with `ast` (nothing is imported, so no JAX or TensorFlow): every
`import lmsi.x`, `from lmsi import x` and `from lmsi.x import y`, at the top
of a module or inside a function, is an edge. Also: no module of lmsi/,
tasks/ or launch/ is over 400 lines.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping, Set

import pytest

from lmsi import taskspec
from tests.conftest import REPO

PACKAGES = ('lmsi', 'tasks')
MAX_LINES = 400


def module_names(root: str = REPO) -> set[str]:
  """'lmsi', 'lmsi.sample', 'tasks', 'tasks.gsm8k', ... of the packages."""
  names = set()
  for pkg in PACKAGES:
    for f in os.listdir(os.path.join(root, pkg)):
      if f.endswith('.py'):
        names.add(pkg if f == '__init__.py' else f'{pkg}.{f[:-3]}')
  return names


def imports_of(source: str, module: str, known: Set[str]) -> set[str]:
  """The modules of `known` that `source` (the module `module`) imports."""
  package = module if module in PACKAGES else module.rsplit('.', 1)[0]
  out = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative: from . import x, from .x import y
        base = '.'.join(filter(None, [package, base]))
      # `from lmsi import x` imports the module lmsi.x; `from lmsi.x
      # import f` (f no module) imports lmsi.x.
      for a in node.names:
        sub = f'{base}.{a.name}'
        out.add(sub if sub in known else base)
  return {name for name in out if name in known and name != module}


def import_graph(root: str = REPO) -> dict[str, set[str]]:
  """Module -> the lmsi/tasks modules it imports, anywhere in its body."""
  known = module_names(root)
  graph = {}
  for name in sorted(known):
    path = os.path.join(root, *name.split('.'))
    path = (os.path.join(path, '__init__.py') if name in PACKAGES
            else path + '.py')
    with open(path, encoding='utf-8') as f:
      graph[name] = imports_of(f.read(), name, known)
  return graph


def find_cycle(graph: Mapping[str, Set[str]]) -> list[str] | None:
  """A cycle as [a, b, ..., a], or None if the graph has none."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done

  def visit(node, path):
    state[node] = 1
    for dep in sorted(graph.get(node, ())):
      if state.get(dep) == 1:
        return path[path.index(dep):] + [dep]
      if dep not in state:
        found = visit(dep, path + [dep])
        if found:
          return found
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node, [node])
      if found:
        return found
  return None


def upward_imports(graph: Mapping[str, Set[str]]) -> list[tuple[str, str]]:
  """(lmsi module, tasks module) edges: the library importing tasks/."""
  return sorted((m, d) for m, deps in graph.items() for d in deps
                if (m == 'lmsi' or m.startswith('lmsi.'))
                and (d == 'tasks' or d.startswith('tasks.')))


def test_no_import_cycles():
  cycle = find_cycle(import_graph())
  assert cycle is None, f'import cycle: {" -> ".join(cycle)}'


def test_lmsi_never_imports_tasks():
  assert upward_imports(import_graph()) == [], (
      'lmsi/ must not import tasks/ (tasks/ writes into lmsi.taskspec)')


def test_modules_at_most_400_lines():
  long = {}
  for pkg in (*PACKAGES, 'launch'):
    for f in sorted(os.listdir(os.path.join(REPO, pkg))):
      if f.endswith('.py'):
        with open(os.path.join(REPO, pkg, f), encoding='utf-8') as fh:
          n = len(fh.read().splitlines())
        if n > MAX_LINES:
          long[f'{pkg}/{f}'] = n
  assert not long, f'modules over {MAX_LINES} lines: {long}'


def test_graph_sees_every_import_form():
  known = {'lmsi', 'lmsi.a', 'lmsi.b', 'lmsi.c', 'lmsi.d', 'tasks',
           'tasks.t'}
  source = '\n'.join([
      'import lmsi.a', 'from lmsi import b as bee', 'from lmsi.c import f',
      'import numpy', 'def g():', '  from . import d', '  import tasks.t'])
  assert imports_of(source, 'lmsi.x', known) == {
      'lmsi.a', 'lmsi.b', 'lmsi.c', 'lmsi.d', 'tasks.t'}
  assert imports_of('from lmsi import VERSION', 'lmsi.x', known) == {'lmsi'}
  graph = import_graph()
  assert 'lmsi.shards' in graph['lmsi.sample']  # the checker reads files
  assert 'lmsi.taskspec' in graph['tasks.releases']


def test_checkers_catch_a_cycle_and_an_upward_import():
  cyclic = {'lmsi.a': {'lmsi.b'}, 'lmsi.b': {'lmsi.c'},
            'lmsi.c': {'lmsi.a'}, 'lmsi.d': set()}
  assert find_cycle(cyclic) == ['lmsi.a', 'lmsi.b', 'lmsi.c', 'lmsi.a']
  assert find_cycle({'lmsi.a': {'lmsi.b'}, 'lmsi.b': set()}) is None
  assert upward_imports({'lmsi.a': {'tasks.t', 'lmsi.b'},
                         'tasks.t': {'lmsi.a'}}) == [('lmsi.a', 'tasks.t')]


def test_unregistered_builder_names_the_module_to_import():
  with pytest.raises(LookupError, match=r'import tasks\.nope or add '
                     r'`import tasks\.nope` to your gin file'):
    taskspec.builder('nope')
