"""Tokenizers behind one `Vocabulary` protocol: bytes and words (the
demo), Hugging Face tokenizer.json, SentencePiece and GGUF vocabularies.
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # base
  from lmsi.vocab.base import Vocabulary
  # simple
  from lmsi.vocab.simple import ByteVocab, WordVocab, load, check_model_vocab
  # pretrained
  from lmsi.vocab.pretrained import HFVocab, SentencePieceVocab

__all__ = [
    'Vocabulary',
    'ByteVocab',
    'WordVocab',
    'load',
    'check_model_vocab',
    'HFVocab',
    'SentencePieceVocab',
]
