"""One way to load a model for sampling and evaluation, whatever stored it.

`load_model` takes
  * an artifact dir (`lmsi.checkpoints.artifact`: safetensors + config +
    vocabulary + digests; the demo's base), which brings its own config
    and vocabulary;
  * a directory `python -m lmsi.convert` wrote (`convert_manifest.json`,
    `checkpoints/0/params`, `tokenizer.json`), which brings them too;
  * an orbax model dir (a training MODEL_DIR or any dir with
    `checkpoints/<step>/params`), with `model_config` and `vocabulary` from
    a model gin file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from lmsi.checkpoints import artifact as artifact_lib
from lmsi.checkpoints import store
from lmsi.model import decoder as decoder_lib
from lmsi.runtime import manifests
from lmsi.vocab import base as vocab_base
from lmsi.vocab import simple as vocab_lib

CONVERT_MANIFEST = 'convert_manifest.json'  # what lmsi.convert writes
CONVERT_TOKENIZER = 'tokenizer.json'


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A model ready to sample: config, params (in `param_dtype`), vocab."""

  config: decoder_lib.DecoderConfig
  params: Any
  vocab: vocab_base.Vocabulary
  inputs: list[str]  # the files read (for a stage's manifest)
  vocabulary: str  # the vocabulary's path, or 'bytes'


def orbax_inputs(checkpoint_path: str, vocabulary: str) -> list[str]:
  """The files a run reads from an orbax dir besides data: params, vocab."""
  return ([store.params_path(checkpoint_path)]
          + ([vocabulary] if vocabulary != 'bytes' else []))


def _converted_config(checkpoint_path: str) -> decoder_lib.DecoderConfig | None:
  path = os.path.join(checkpoint_path, CONVERT_MANIFEST)
  if not os.path.isfile(path):
    return None
  with open(path, encoding='utf-8') as f:
    return decoder_lib.DecoderConfig(**json.load(f)['config'])


def _from_artifact(checkpoint_path: str,
                   model_config: decoder_lib.DecoderConfig | None,
                   vocabulary: str | None, param_dtype: str) -> LoadedModel:
  art = artifact_lib.load(checkpoint_path)
  if model_config is not None and model_config != art.model_config:
    raise ValueError(f'MODEL_CONFIG differs from the model_config of the '
                     f'artifact {checkpoint_path!r}; use gin/models/'
                     'artifact.gin (the artifact brings its own)')
  if vocabulary is not None and not (
      os.path.isfile(vocabulary) and manifests.file_sha256(vocabulary)
      == art.meta['sha256'][artifact_lib.VOCAB_FILE]):
    raise ValueError(f'VOCABULARY {vocabulary!r} is not the vocabulary of the '
                     f'artifact {checkpoint_path!r}; use gin/models/'
                     'artifact.gin (the artifact brings its own)')
  cfg, params = decoder_lib.with_dtype(art.model_config, art.params,
                                       param_dtype)
  vocab = vocab_lib.load(art.vocab_path)
  vocab_lib.check_model_vocab(vocab, cfg.vocab_size, art.vocab_path)
  files = [os.path.join(checkpoint_path, f) for f in (
      artifact_lib.PARAMS_FILE, artifact_lib.VOCAB_FILE,
      artifact_lib.META_FILE)]
  return LoadedModel(cfg, params, vocab, files, art.vocab_path)


def load_model(checkpoint_path: str,
               model_config: decoder_lib.DecoderConfig | None = None,
               vocabulary: str | None = None,
               param_dtype: str = 'float32') -> LoadedModel:
  """The model at `checkpoint_path`, its params cast to `param_dtype` and its
  vocabulary checked to fit it.

  Raises:
    ValueError: an orbax dir without `model_config` or `vocabulary`, or an
      artifact whose own config or vocabulary differs from the ones given.
  """
  if artifact_lib.is_artifact(checkpoint_path):
    return _from_artifact(checkpoint_path, model_config, vocabulary,
                          param_dtype)
  converted = _converted_config(checkpoint_path)
  if converted is not None:
    model_config = model_config or converted
    vocabulary = vocabulary or os.path.join(checkpoint_path,
                                            CONVERT_TOKENIZER)
  if model_config is None or vocabulary is None:
    raise ValueError(
        f'{checkpoint_path!r} is not an lmsi artifact (no '
        f'{artifact_lib.META_FILE}) nor a directory lmsi.convert wrote (no '
        f'{CONVERT_MANIFEST}), so MODEL_CONFIG and VOCABULARY must come from '
        'a model gin file (e.g. gin/models/smollm2_135m.gin)')
  params = store.restore_params(model_config, checkpoint_path)
  model_config, params = decoder_lib.with_dtype(model_config, params,
                                                param_dtype)
  vocab = vocab_lib.load(vocabulary)
  vocab_lib.check_model_vocab(vocab, model_config.vocab_size, vocabulary)
  return LoadedModel(model_config, params, vocab,
                     orbax_inputs(checkpoint_path, vocabulary), vocabulary)
