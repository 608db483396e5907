"""Hugging Face and GGUF checkpoints in and out of the decoder (what
`python -m lmsi.convert` and `python -m lmsi.export` run).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # pretrained
  from lmsi.interop.pretrained import Imported, ConversionError
  # importing
  from lmsi.interop.importing import convert, import_checkpoint
  # weights
  from lmsi.interop.weights import smollm2_gguf
  # exporting
  from lmsi.interop.exporting import export, ExportError
  # hf_import
  from lmsi.interop.hf_import import import_hf
  # gguf_import
  from lmsi.interop.gguf_import import import_gguf

__all__ = [
    'Imported',
    'ConversionError',
    'convert',
    'import_checkpoint',
    'smollm2_gguf',
    'export',
    'ExportError',
    'import_hf',
    'import_gguf',
]
