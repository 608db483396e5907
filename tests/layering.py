"""The import rules of lmsi/, read from the source with `ast` (nothing runs).

- Layers: a subpackage of lmsi/ imports only subpackages of its own layer or
  of lower ones (`LAYERS`, lowest first); no cycle between modules, and none
  between subpackages.
- Commands (`lmsi/<command>.py`, `python -m lmsi.<command>`) sit on top:
  no library module imports one.
- lmsi/ never imports tasks/ (tasks/ registers into lmsi.data.taskspec).
- No module uses another module's `_private` names: not as `mod._name`, not
  by `from mod import _name`, not by `setattr(mod, '_name', ...)` or
  `monkeypatch.setattr(mod, '_name', ...)` (lmsi, bench, tools, tests).

Every `import` counts, at the top of a module, inside a function or under
`if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence, Set

# Lowest first. A subpackage may import its own layer and those below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ('runtime',),
    ('model', 'vocab', 'data'),
    ('sampling', 'voting', 'trainer', 'checkpoints', 'interop'),
    ('evaluation', 'self_inputs', 'capacity'),
    ('demo',),
    ('studies',),
)
COMMANDS = frozenset({'sample', 'aggregate', 'train', 'evaluate', 'probe',
                      'question_gen', 'pipeline', 'study', 'convert',
                      'export'})


@dataclasses.dataclass(frozen=True)
class Module:
  name: str  # 'lmsi.sampling.generation'
  path: str
  is_package: bool


def find_modules(root: str, packages: Sequence[str]) -> dict[str, Module]:
  """Every module under `root`/<package> for each top-level package."""
  out = {}
  for pkg in packages:
    base = os.path.join(root, pkg)
    for dirpath, dirnames, filenames in os.walk(base):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith(('.', '__')))
      rel = os.path.relpath(dirpath, root).split(os.sep)
      for f in sorted(filenames):
        if not f.endswith('.py'):
          continue
        is_package = f == '__init__.py'
        name = '.'.join(rel if is_package else rel + [f[:-3]])
        out[name] = Module(name, os.path.join(dirpath, f), is_package)
  return out


def _resolve(node: ast.ImportFrom, module: Module) -> str:
  base = node.module or ''
  if node.level:
    parts = module.name.split('.')
    keep = len(parts) - node.level + (1 if module.is_package else 0)
    base = '.'.join(filter(None, ['.'.join(parts[:keep]), base]))
  return base


@dataclasses.dataclass
class Parsed:
  imports: set[str]  # modules of `known` imported
  aliases: dict[str, str]  # local name -> module of `known`
  private_uses: list[tuple[str, str, int]]  # (module, name, line)


def parse(source: str, module: Module, known: Set[str]) -> Parsed:
  """The known modules a source imports, and its uses of their `_names`."""
  imports, aliases, private = set(), {}, []
  tree = ast.parse(source)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name in known:
          imports.add(a.name)
          if a.asname:
            aliases[a.asname] = a.name
        else:  # import lmsi.x.y: the deepest known prefix
          parts = a.name.split('.')
          for i in range(len(parts), 0, -1):
            if '.'.join(parts[:i]) in known:
              imports.add('.'.join(parts[:i]))
              break
    elif isinstance(node, ast.ImportFrom):
      base = _resolve(node, module)
      for a in node.names:
        sub = f'{base}.{a.name}'
        if sub in known:  # from lmsi.x import module
          imports.add(sub)
          aliases[a.asname or a.name] = sub
        elif base in known:  # from lmsi.x import name
          imports.add(base)
          if a.name.startswith('_') and not a.name.startswith('__'):
            private.append((base, a.name, node.lineno))
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and _is_private(node.attr)):
      private.append((aliases[node.value.id], node.attr, node.lineno))
    elif isinstance(node, ast.Call) and len(node.args) >= 2:
      func = node.func
      name = (func.attr if isinstance(func, ast.Attribute)
              else func.id if isinstance(func, ast.Name) else '')
      target, attr = node.args[0], node.args[1]
      if (name == 'setattr' and isinstance(target, ast.Name)
          and target.id in aliases and isinstance(attr, ast.Constant)
          and isinstance(attr.value, str) and _is_private(attr.value)):
        private.append((aliases[target.id], attr.value, node.lineno))
  imports.discard(module.name)
  return Parsed(imports, aliases, private)


def _is_private(name: str) -> bool:
  return name.startswith('_') and not name.startswith('__')


def graph_of(root: str, packages: Sequence[str]
             ) -> tuple[dict[str, Module], dict[str, Parsed]]:
  modules = find_modules(root, packages)
  known = set(modules)
  parsed = {}
  for name, module in modules.items():
    with open(module.path, encoding='utf-8') as f:
      parsed[name] = parse(f.read(), module, known)
  return modules, parsed


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


def subpackage(name: str, top: str = 'lmsi') -> str | None:
  """'sampling' for 'lmsi.sampling.generation'; None for lmsi and commands."""
  parts = name.split('.')
  if parts[0] != top or len(parts) < 2:
    return None
  if len(parts) == 2 and parts[1] in COMMANDS:
    return None
  return parts[1]


def is_command(name: str, top: str = 'lmsi') -> bool:
  parts = name.split('.')
  return len(parts) == 2 and parts[0] == top and parts[1] in COMMANDS


def layer_of(pkg: str, layers: Sequence[Sequence[str]] = LAYERS) -> int:
  for i, members in enumerate(layers):
    if pkg in members:
      return i
  raise KeyError(f'lmsi/{pkg}/ is in no layer of tests/layering.py LAYERS')


def violations(parsed: Mapping[str, Parsed], top: str = 'lmsi',
               layers: Sequence[Sequence[str]] = LAYERS) -> list[str]:
  """Every broken rule, one readable line each (empty: all rules hold)."""
  out = []
  for name, p in sorted(parsed.items()):
    mine = subpackage(name, top)
    for dep in sorted(p.imports):
      theirs = subpackage(dep, top)
      if name.startswith(top + '.') or name == top:
        if dep == 'tasks' or dep.startswith('tasks.'):
          out.append(f'{name} imports {dep}: {top}/ never imports tasks/')
        if is_command(dep, top) and not is_command(name, top):
          out.append(f'{name} imports the command {dep}: commands sit on '
                     'top, libraries never import them')
        if mine and theirs and layer_of(theirs, layers) > layer_of(
            mine, layers):
          out.append(f'{name} (layer {layer_of(mine, layers)}, {mine}) '
                     f'imports {dep} (layer {layer_of(theirs, layers)}, '
                     f'{theirs}): an upward import')
    for dep, attr, line in p.private_uses:
      if dep != name:
        out.append(f'{name}:{line} uses {dep}.{attr}, a private name of '
                   'another module: make it public or go through the API')
  module_graph = {n: {d for d in p.imports if d in parsed}
                  for n, p in parsed.items()}
  cycle = find_cycle(module_graph)
  if cycle:
    out.append('import cycle: ' + ' -> '.join(cycle))
  package_graph: dict[str, set[str]] = {}
  for n, p in parsed.items():
    mine = subpackage(n, top)
    if mine:
      package_graph.setdefault(mine, set()).update(
          t for t in (subpackage(d, top) for d in p.imports)
          if t and t != mine)
  cycle = find_cycle(package_graph)
  if cycle:
    out.append('subpackage cycle: ' + ' -> '.join(cycle))
  return out


def check(root: str, packages: Iterable[str] = ('lmsi', 'tasks', 'bench',
                                                  'tools', 'tests')
          ) -> list[str]:
  _, parsed = graph_of(root, [p for p in packages
                              if os.path.isdir(os.path.join(root, p))])
  return violations(parsed)
