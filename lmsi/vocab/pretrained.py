"""Pretrained checkpoints' tokenizers as `vocab_base.Vocabulary`s.

  * `HFVocab`: a Hugging Face `tokenizers.Tokenizer` (byte-level BPE) from a
    `tokenizer.json`, or rebuilt from GGUF metadata by `lmsi.vocab.gguf`.
  * `SentencePieceVocab`: a SentencePiece model, from a `.model` file
    (Llama-1/2, T5) or rebuilt from GGUF metadata (Gemma).

`tokenizers` and `sentencepiece` are imported only when one is built.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable

from lmsi.runtime import fileio
from lmsi.vocab import base as vocab_base


class HFVocab:
  """A Hugging Face `tokenizers.Tokenizer` (BPE from tokenizer.json/GGUF).

  `encode` adds no BOS/EOS; `add_bos` says whether prompts start with
  `bos_id` (`vocab_base.prompt_ids`): the GGUF's add_bos_token, or
  tokenizer_config.json's, or else whether the tokenizer's own
  post-processor puts BOS first (Llama 3's does; SmolLM2's and Qwen2's have
  no BOS). `decode` stops at the
  first EOS and keeps other special tokens as text, like transformers'
  `decode`. `eos_ids`: every id a path ends at, `eos_id` first (Llama 3.1's
  `generation_config.json` lists three; the sampler stops at each).
  """

  unk_id = None

  def __init__(self, tokenizer, *, eos_id: int, pad_id: int | None = None,
               bos_id: int | None = None, source: str = '',
               eos_ids: Iterable[int] = (), add_bos: bool = False):
    self.tokenizer = tokenizer
    self.eos_id = int(eos_id)
    self.eos_ids = tuple(dict.fromkeys([self.eos_id,
                                        *(int(i) for i in eos_ids)]))
    self.pad_id = int(self.eos_id if pad_id is None else pad_id)
    self.bos_id = bos_id
    self.add_bos = bool(add_bos and bos_id is not None)
    self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    self.source = source

  @classmethod
  def from_file(cls, path: str) -> HFVocab:
    """tokenizer.json (+ the special ids from its tokenizer_config.json, and
    the list of EOS ids a generation_config.json beside it may give)."""
    import tokenizers  # pylint: disable=g-import-not-at-top
    tok = tokenizers.Tokenizer.from_file(path)
    config = os.path.join(os.path.dirname(path), 'tokenizer_config.json')
    names = {}
    if os.path.exists(config):
      with open(config, encoding='utf-8') as f:
        names = json.load(f)
    ids = {}
    for key in ('eos', 'pad', 'bos'):
      name = names.get(f'{key}_token')
      if isinstance(name, dict):
        name = name.get('content')
      ids[key] = tok.token_to_id(name) if name else None
    if ids['eos'] is None:
      for name in ('<|endoftext|>', '</s>', '<eos>', '<|im_end|>'):
        if tok.token_to_id(name) is not None:
          ids['eos'] = tok.token_to_id(name)
          break
      else:
        raise ValueError(f'{path}: no EOS token (set eos_token in '
                         f'{config})')
    add_bos = names.get('add_bos_token')
    if add_bos is None:
      add_bos = (ids['bos'] is not None and
                 tok.encode('a').ids[:1] == [ids['bos']])
    return cls(tok, eos_id=ids['eos'], pad_id=ids['pad'], bos_id=ids['bos'],
               source=path, eos_ids=generation_eos_ids(os.path.dirname(path)),
               add_bos=bool(add_bos))

  def encode(self, text: str) -> list[int]:
    return self.tokenizer.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Iterable[int]) -> str:
    kept = vocab_base.ids_before_eos(ids, self.eos_ids,
                                     lambda i: 0 <= i < self.vocab_size)
    return self.tokenizer.decode(kept, skip_special_tokens=False)

  def token_bytes(self) -> list[bytes]:
    table = {c: b for b, c in _bytes_to_unicode().items()}
    special = {t.content for t in
               self.tokenizer.get_added_tokens_decoder().values()}
    out = []
    for i in range(self.vocab_size):
      piece = self.tokenizer.id_to_token(i) or ''
      if piece in special or any(c not in table for c in piece):
        out.append(piece.encode('utf-8'))
      else:
        out.append(bytes(table[c] for c in piece))
    return out

  def save(self, output_dir: str) -> str:
    """Writes tokenizer.json (+ the special ids); returns its file name."""
    fileio.write_text_atomic(os.path.join(output_dir, 'tokenizer.json'),
                              self.tokenizer.to_str())
    _write_special(output_dir, self, self.tokenizer.id_to_token)
    return 'tokenizer.json'

  def fingerprint(self) -> str:
    return self._fingerprint

  @functools.cached_property
  def _fingerprint(self) -> str:
    # Hashing the serialized tokenizer takes ~17 ms (SmolLM2's), and the
    # sampler asks for it once per batch (its stop tables' cache key).
    digest = hashlib.sha256(self.tokenizer.to_str().encode('utf-8'))
    if self.add_bos:  # the same tokenizer, but prompts tokenize otherwise
      digest.update(b' add_bos')
    return 'hf:' + digest.hexdigest()

  def to_seqio(self):
    return vocab_base.seqio_twin(self)


class SentencePieceVocab:
  """A SentencePiece model: a `.model` file (Llama-1/2, T5) or one rebuilt
  from a GGUF file's metadata (`lmsi.vocab.gguf`: Gemma).

  `add_bos`: prompts start with `bos_id` (`vocab_base.prompt_ids`; Gemma's
  do, and its model is lost without it). `encode` itself never adds it, so
  training targets get none. Control pieces written inside the text (e.g.
  "<start_of_turn>") are encoded as text, as SentencePiece does; lmsi's
  prompts hold none.
  """

  def __init__(self, model_proto: bytes, *, source: str = '',
               add_bos: bool = False, eos_ids: Iterable[int] = ()):
    import sentencepiece  # pylint: disable=g-import-not-at-top
    self.model_proto = model_proto
    self.source = source
    self.sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
    self.vocab_size = self.sp.get_piece_size()
    self.eos_id = self.sp.eos_id()
    self.eos_ids = tuple(dict.fromkeys([self.eos_id,
                                        *(int(i) for i in eos_ids)]))
    self.pad_id = max(self.sp.pad_id(), 0)
    self.unk_id = self.sp.unk_id()
    self.bos_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
    self.add_bos = bool(add_bos and self.bos_id is not None)

  @classmethod
  def from_file(cls, path: str) -> SentencePieceVocab:
    """A `.model` file (+ `add_bos_token` from a tokenizer_config.json and
    the EOS list of a generation_config.json beside it)."""
    with open(path, 'rb') as f:
      proto = f.read()
    config = os.path.join(os.path.dirname(path), 'tokenizer_config.json')
    add_bos = False
    if os.path.exists(config):
      with open(config, encoding='utf-8') as f:
        add_bos = bool(json.load(f).get('add_bos_token', False))
    return cls(proto, source=path, add_bos=add_bos,
               eos_ids=generation_eos_ids(os.path.dirname(path)))

  def encode(self, text: str) -> list[int]:
    return list(self.sp.encode(text))

  def decode(self, ids: Iterable[int]) -> str:
    kept = vocab_base.ids_before_eos(
        ids, self.eos_ids,
        lambda i: 0 <= i < self.vocab_size and i != self.pad_id and
        i != self.bos_id)
    return self.sp.decode(kept)

  def token_bytes(self) -> list[bytes]:
    out = []
    for i in range(self.vocab_size):
      piece = self.sp.id_to_piece(i)
      if self.sp.is_byte(i):
        out.append(bytes([int(piece[3:5], 16)]))
      elif self.sp.is_control(i) or self.sp.is_unknown(i):
        out.append(b'')
      else:
        out.append(piece.replace('\u2581', ' ').encode('utf-8'))
    return out

  def save(self, output_dir: str) -> str:
    """Writes tokenizer.model (+ add_bos and the special ids in
    tokenizer_config.json, the EOS list); returns its file name."""
    fileio.write_atomic(os.path.join(output_dir, 'tokenizer.model'),
                        lambda f: f.write(self.model_proto), binary=True)
    _write_special(output_dir, self, self.sp.id_to_piece)
    return 'tokenizer.model'

  def fingerprint(self) -> str:
    return self._fingerprint

  @functools.cached_property
  def _fingerprint(self) -> str:
    digest = hashlib.sha256(self.model_proto)
    digest.update(f' add_bos={self.add_bos} eos={self.eos_ids}'.encode())
    return 'sp:' + digest.hexdigest()

  def to_seqio(self):
    return vocab_base.seqio_twin(self)


GENERATION_CONFIG = 'generation_config.json'


def _write_special(output_dir: str, vocab, piece_of) -> None:
  """tokenizer_config.json (add_bos_token and the special tokens by name)
  and, for several EOS ids, generation_config.json's list: what `from_file`
  reads back."""
  config = {'add_bos_token': vocab.add_bos,
            **{f'{k}_token': piece_of(v) for k, v in
               (('eos', vocab.eos_id), ('pad', vocab.pad_id),
                ('bos', vocab.bos_id)) if v is not None}}
  fileio.write_text_atomic(os.path.join(output_dir, 'tokenizer_config.json'),
                           json.dumps(config, indent=1) + '\n')
  if len(vocab.eos_ids) > 1:
    fileio.write_text_atomic(
        os.path.join(output_dir, GENERATION_CONFIG),
        json.dumps({'eos_token_id': list(vocab.eos_ids)}, indent=1) + '\n')


def generation_eos_ids(directory: str) -> tuple[int, ...]:
  """`eos_token_id` of `directory`/generation_config.json, as a tuple (the
  Hub writes one id or a list); () without the file or the key.

  Raises:
    ValueError: naming the file if the key is neither an int nor a list of
      ints.
  """
  path = os.path.join(directory, GENERATION_CONFIG)
  if not os.path.exists(path):
    return ()
  with open(path, encoding='utf-8') as f:
    value = json.load(f).get('eos_token_id')
  if value is None:
    return ()
  ids = value if isinstance(value, list) else [value]
  if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
    raise ValueError(f'{path}: eos_token_id is {value!r}; expected an int '
                     'or a list of ints')
  return tuple(ids)


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's byte -> printable character table of byte-level BPE."""
  keep = (list(range(ord('!'), ord('~') + 1)) +
          list(range(ord('\xa1'), ord('\xac') + 1)) +
          list(range(ord('\xae'), ord('\xff') + 1)))
  table, extra = {}, 0
  for b in range(256):
    if b in keep:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table


def byte_tokenizer_json(pad: str = '<pad>', eos: str = '</s>',
                        unk: str = '<unk>') -> str:
  """A tokenizer.json that encodes id for id like `vocab.ByteVocab`.

  Byte-level BPE without merges: pad 0, EOS 1, UNK 2, byte b -> b + 3, so a
  byte-vocabulary model exported to Hugging Face or GGUF keeps a tokenizer
  transformers, lm-evaluation-harness and llama.cpp read.
  """
  import tokenizers  # pylint: disable=g-import-not-at-top
  from tokenizers import (  # pylint: disable=g-import-not-at-top
      decoders, models, pre_tokenizers)
  table = _bytes_to_unicode()
  vocab = {pad: 0, eos: 1, unk: 2, **{table[b]: b + 3 for b in range(256)}}
  tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                               use_regex=True)
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True,
                                                normalized=False)
                          for t in (pad, eos, unk)])
  return tok.to_str()
