r"""Command: export an lmsi model to a Hugging Face directory or a GGUF file.

    python -m lmsi.export --from=MODEL_DIR|CHECKPOINT --to=DIR \
        --format=hf|gguf [--dtype=float32] [--untie] [--tokenizer=PATH]

The work is `lmsi.interop.exporting.export`
(its docstring says what it reads and writes).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from absl import app
from absl import flags

from lmsi.interop import exporting
from lmsi.interop import gguf_export
from lmsi.interop import hf_export
from lmsi.runtime import gin_flags

def _define_flags() -> None:
  """The binary's flags: defined only when it runs, so that importing
  lmsi.export next to lmsi.convert does not define --from twice."""
  flags.DEFINE_string('from', None, 'A training MODEL_DIR (or a step dir of '
                      'one), a directory lmsi.convert wrote, or an artifact.')
  flags.DEFINE_string('to', None, 'The output directory.')
  flags.DEFINE_enum('format', 'hf', ['hf', 'gguf'], 'Output format.')
  flags.DEFINE_enum('dtype', 'float32',
                    sorted(set(hf_export.DTYPES) | set(gguf_export.DTYPES)),
                    'Stored weight type (q8_0: GGUF only).')
  flags.DEFINE_bool('untie', False, "Write a scaled tied head (the tiny "
                    "models' scale_tied_logits) as an untied lm_head with "
                    'the same logits.')
  flags.DEFINE_string('tokenizer', None, 'tokenizer.json to export with the '
                      'model, or "bytes" for lmsi\'s ByteVocab (default: the '
                      'one the model was converted with).')
  flags.DEFINE_integer('context_length', None, 'max_position_embeddings / '
                       "context_length to write (default: the pretrained "
                       "model's, else 2048).")
  flags.DEFINE_string('gguf_pre', None, "gguf: llama.cpp's pre-tokenizer "
                      "name (default: the converted GGUF's, else recognised "
                      'from tokenizer.json).')
  flags.DEFINE_integer('max_shard_mib', 5 * 1024,
                       'hf: split model.safetensors above this size.')


def main(argv: Sequence[str]) -> None:
  """Exports --from into --to and prints where and what it wrote."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {list(argv[1:])}')
  gin_flags.quiet_libraries()
  f = flags.FLAGS
  if f.format == 'hf' and f.dtype not in hf_export.DTYPES:
    raise app.UsageError(f'--dtype={f.dtype} is for --format=gguf only')
  try:
    manifest = exporting.export(f['from'].value, f.to, f.format, dtype=f.dtype,
                      untie=f.untie, tokenizer=f.tokenizer,
                      context_length=f.context_length, gguf_pre=f.gguf_pre,
                      max_shard_bytes=f.max_shard_mib * 2**20)
  except exporting.ExportError as e:
    sys.exit(f'lmsi.export: {e}')
  print(json.dumps({'to': os.path.abspath(f.to),
                    'files': sorted(manifest['files']),
                    'tensor_types': manifest['tensor_types'],
                    'tokenizer': manifest['tokenizer']}, indent=1))


if __name__ == '__main__':
  _define_flags()
  flags.mark_flags_as_required(['from', 'to'])
  app.run(main)
