"""lmsi: Large Language Models Can Self-Improve (Huang et al., 2022) in JAX.

Commands sit on top (`python -m lmsi.<command>`: sample, aggregate, train,
evaluate, probe, question_gen, pipeline, study, convert, export); the
libraries live in subpackages by concept, each with a curated `__init__`,
in this layer order (a layer imports only its own and lower ones;
tests/layering.py checks it):

  runtime -> model, vocab, data -> sampling, voting, trainer, checkpoints,
  interop -> evaluation, self_inputs, capacity -> demo -> studies -> commands

Until the next release, the flat module names of lmsi 0.1 (`lmsi.decoder`,
`lmsi.records`, ...) still import, as aliases of their new homes, with a
DeprecationWarning, so old gin files and config.gin files keep parsing.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# lmsi 0.1's flat modules -> where they live now (one release of grace).
# `sampling`, `voting`, `vocab` and `checkpoints` became packages of the
# same name that re-export what their modules had.
MOVED = {
    'aot': 'lmsi.capacity.aot',
    'answer_match': 'lmsi.voting.match',
    'answers': 'lmsi.data.answers',
    'arithmetic': 'lmsi.demo.arithmetic',
    'artifact': 'lmsi.checkpoints.artifact',
    'batching': 'lmsi.sampling.batching',
    'decoder': 'lmsi.model.decoder',
    'demo_base': 'lmsi.demo.base',
    'distributed': 'lmsi.runtime.distributed',
    'draw': 'lmsi.sampling.draw',
    'exemplar_gen': 'lmsi.self_inputs.exemplar_gen',
    'exemplars': 'lmsi.data.exemplars',
    'gguf_export': 'lmsi.interop.gguf_export',
    'gguf_import': 'lmsi.interop.gguf_import',
    'gguf_vocab': 'lmsi.vocab.gguf',
    'gin_flags': 'lmsi.runtime.gin_flags',
    'hf_export': 'lmsi.interop.hf_export',
    'hf_import': 'lmsi.interop.hf_import',
    'inputs': 'lmsi.data.inputs',
    'layers': 'lmsi.model.layers',
    'manifests': 'lmsi.runtime.manifests',
    'paper': 'lmsi.studies.paper',
    'pretrained': 'lmsi.interop.pretrained',
    'pretrained_vocab': 'lmsi.vocab.pretrained',
    'prompts': 'lmsi.data.prompts',
    'question_filter': 'lmsi.self_inputs.question_filter',
    'records': 'lmsi.data.records',
    'report': 'lmsi.studies.report',
    'roofline': 'lmsi.capacity.estimates',
    'sharding': 'lmsi.model.sharding',
    'shards': 'lmsi.data.shards',
    'slots': 'lmsi.sampling.scheduler',
    'stage': 'lmsi.sampling.batched',
    'styles': 'lmsi.demo.styles',
    'taskspec': 'lmsi.data.taskspec',
    'train_loop': 'lmsi.trainer.loop',
    'train_state': 'lmsi.trainer.state',
    'train_step': 'lmsi.trainer.step',
    'vocab_base': 'lmsi.vocab.base',
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Imports `lmsi.<old name>` as the module it moved to."""

  def __init__(self):
    self._own = {}  # new name -> (its spec, its loader)

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    prefix, _, name = fullname.partition('.')
    if prefix == 'lmsi' and name in MOVED:
      return importlib.util.spec_from_loader(fullname, self)
    return None

  def create_module(self, spec):
    new = MOVED[spec.name.partition('.')[2]]
    warnings.warn(f'{spec.name} moved to {new}; the old name goes in the '
                  'next release', DeprecationWarning, stacklevel=2)
    module = importlib.import_module(new)
    self._own[new] = (module.__spec__, module.__loader__)
    return module

  def exec_module(self, module):
    # Already executed under its new name; the import system has just set
    # the alias's spec on it: give it back its own.
    module.__spec__, module.__loader__ = self._own[module.__name__]


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
  sys.meta_path.append(_MovedModules())
