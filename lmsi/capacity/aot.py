"""AOT compilation for a TPU slice: does a run fit, how fast (capacity).

Compiles the real jitted functions of sampling (stage 3: `kernels.prefill`
and `kernels.decode_chunk`, the continuous-batching decode loop) and of
fine-tuning (stage 6: `train_step.make_train_step`, Adafactor) for a target
without the hardware: every argument is a `jax.ShapeDtypeStruct` with its
sharding on a ('data', 'model') mesh laid out by `lmsi.model.sharding`'s one
rules table. The target is a TPU topology
(`jax.experimental.topologies.get_topology_desc`, needs the `libtpu` that
`jax[tpu]` pins) or N fake CPU devices with the same mesh. Each program reports
per-device memory, FLOPs and bytes and its compile time;
`lmsi.capacity.estimates` turns them into step and round times. XLA's cost
analysis counts a loop body ONCE: `_chunk`'s fori_loop reports one decode step;
a train step with `scan_layers` or gradient accumulation one layer /
micro-batch.

Binary: python -m lmsi.capacity.aot --gin_file=gin/models/llama3_8b.gin
--stage=train
  --topology=v5e-256 [--model_axis=8 --remat=full --fake_cpu ...]
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, PartitionSpec

from lmsi.model import decoder as decoder_lib
from lmsi.capacity import estimates as roofline_lib
from lmsi.sampling import kernels
from lmsi.model import sharding
from lmsi.trainer import preference as preference_lib
from lmsi.trainer import state as train_state
from lmsi.trainer import step as step_lib
from lmsi.model.sharding import CACHE_HEADS, CACHE_LENGTH, KV

GiB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
  """Per-chip peak numbers (Google Cloud TPU system-architecture pages)."""

  generation: str
  peak_flops: float  # dense bf16 FLOP/s
  hbm_bytes: int
  hbm_bandwidth: float  # bytes/s
  cores_per_chip: int  # what the number in `v4-32` counts
  dims: int  # 3D torus or 2D
  chip_config: str  # get_topology_desc's chip_config_name (megacore: 1 device)


CHIPS = {
    'v4': Chip('v4', 275e12, 32 * GiB, 1.2e12, 2, 3, 'megacore'),
    'v5e': Chip('v5e', 197e12, 16 * GiB, 819e9, 1, 2, 'default'),
    'v5p': Chip('v5p', 459e12, 95 * GiB, 2.76e12, 2, 3, 'megacore'),
    'v6e': Chip('v6e', 918e12, 32 * GiB, 1.64e12, 1, 2, 'default'),
}
_ALIASES = {'v5litepod': 'v5e'}


@dataclasses.dataclass(frozen=True)
class Target:
  """Where to compile: `slice_name` ('v5e-256'), its chip and devices."""

  slice_name: str
  chip: Chip
  topology: str  # '16x16'
  devices: tuple[Any, ...]  # one per chip
  fake_cpu: bool


def parse_slice(name: str) -> tuple[Chip, int, str]:
  """'v5e-256' -> (chip, 256 chips, '16x16'), as `launch/tpus.py` counts.

  Raises:
    ValueError: for an unknown generation or a size that is not a slice.
  """
  m = re.fullmatch(r'(v\d+[a-z]*)-(\d+)', name)
  gen = _ALIASES.get(m.group(1), m.group(1)) if m else None
  if gen not in CHIPS:
    raise ValueError(f'unknown TPU slice {name!r}; expected v4-N, v5e-N, '
                     'v5p-N or v6e-N')
  chip = CHIPS[gen]
  chips, rest = divmod(int(m.group(2)), chip.cores_per_chip)
  shape = [2, 2, 1] if chip.dims == 3 else [1, 1]
  while int(np.prod(shape)) < chips:  # double the last shortest side
    i = max(j for j, d in enumerate(shape) if d == min(shape))
    shape[i] *= 2
  if rest or not chips or int(np.prod(shape)) != chips:
    raise ValueError(f'{name!r} is not a {gen} slice size')
  return chip, chips, 'x'.join(map(str, shape))


def target(name: str, fake_cpu: bool = False) -> Target:
  """The compile-only devices of slice `name` (libtpu), or as many CPUs.

  With `fake_cpu` the process needs that many CPU devices (set
  `jax_num_cpu_devices` or XLA_FLAGS before JAX starts).
  """
  chip, chips, topology = parse_slice(name)
  if fake_cpu:
    devices = jax.devices('cpu')[:chips]
    if len(devices) < chips:
      raise ValueError(f'{name} needs {chips} CPU devices, this process has '
                       f'{len(devices)} (start it with jax_num_cpu_devices)')
  else:
    # pylint: disable-next=g-import-not-at-top
    from jax.experimental import topologies
    devices = topologies.get_topology_desc(
        platform='tpu', topology_name=f'{chip.generation}:{topology}',
        chip_config_name=chip.chip_config,
        chips_per_host_bounds=(2, 2, 1), num_slices=1).devices
  return Target(name, chip, topology, tuple(devices), fake_cpu)


def mesh_for(tgt: Target, model_axis: int) -> Mesh:
  return sharding.create_mesh(model=model_axis, devices=list(tgt.devices))


@dataclasses.dataclass(frozen=True)
class Program:
  """One compiled program, per device (loop bodies counted once)."""

  name: str
  argument_bytes: int
  output_bytes: int
  alias_bytes: int  # donated inputs reused as outputs
  temp_bytes: int
  code_bytes: int
  flops: float
  bytes_accessed: float
  compile_s: float

  @property
  def total_bytes(self) -> int:
    return (self.argument_bytes + self.output_bytes - self.alias_bytes
            + self.temp_bytes + self.code_bytes)


def _program(name: str, lowered) -> Program:
  start = time.perf_counter()
  compiled = lowered.compile()
  seconds = time.perf_counter() - start
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  sizes = (int(getattr(mem, f'{k}_size_in_bytes')) for k in (
      'argument', 'output', 'alias', 'temp', 'generated_code'))
  return Program(name, *sizes, float(cost.get('flops', 0.0)),
                 float(cost.get('bytes accessed', 0.0)), seconds)


def abstract_params(cfg: decoder_lib.DecoderConfig, mesh: Mesh,
                    rules: sharding.Rules) -> Any:
  """The params as sharded ShapeDtypeStructs (nothing is allocated)."""
  tokens = jnp.zeros((1, 8), jnp.int32)
  boxed = jax.eval_shape(lambda: decoder_lib.Decoder(cfg).init(
      jax.random.PRNGKey(0), tokens, tokens > -1))['params']
  return _sharded(mesh, rules, nn.unbox(boxed), nn.get_partition_spec(boxed))


def _sharded(mesh, rules, shapes, logical):
  """ShapeDtypeStructs of `shapes` placed by logical PartitionSpecs."""
  shards = sharding.shardings_for(logical, mesh, rules, shapes=shapes)
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      shapes, shards)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleShape:
  """One sampling call (gin/runs/sample.gin's defaults; GSM8K prompts)."""

  questions: int = 64  # BATCH_QUESTIONS: prompts prefilled per call
  num_samples: int = 32  # NUM_SAMPLES (m)
  max_decode_steps: int = 256  # MAX_DECODE_STEPS
  num_slots: int = 512  # paths decoded at once (continuous batching)
  prefix_len: int = 742  # shared 8-shot CoT exemplar block (SmolLM2 tokens)
  prompt_len: int = 256  # question part, padded (bucket of the longest)
  num_stops: int = 1  # stop strings ('\n\n')


def compile_sample(cfg: decoder_lib.DecoderConfig, mesh: Mesh,
                   shape: SampleShape) -> list[Program]:
  """Compiles the prefill and one decode chunk of sampling on `mesh`."""
  rules = sharding.logical_axis_rules(for_sampling=True)
  params = abstract_params(cfg, mesh, rules)
  act = jnp.dtype(cfg.dtype)
  sds = jax.ShapeDtypeStruct
  kv = lambda *s: (sds(s, act), sds(s, act))
  prefix_shape = tuple(kv(shape.prefix_len, cfg.num_kv_heads, cfg.head_dim)
                       for _ in range(cfg.num_layers))
  prefix = _sharded(mesh, rules, prefix_shape, jax.tree_util.tree_map(
      lambda _: PartitionSpec(CACHE_LENGTH, CACHE_HEADS, KV), prefix_shape))
  # The chunk reads the prefix in `layers.decode_prefix`'s layout.
  decode_prefix = tuple(
      (sds((cfg.num_kv_heads, cfg.head_dim, shape.prefix_len), act),
       sds((cfg.num_kv_heads, shape.prefix_len, cfg.head_dim), act))
      for _ in range(cfg.num_layers))
  decode_prefix = _sharded(mesh, rules, decode_prefix, tuple(
      (PartitionSpec(CACHE_HEADS, KV, CACHE_LENGTH),
       PartitionSpec(CACHE_HEADS, CACHE_LENGTH, KV))
      for _ in range(cfg.num_layers)))
  batch = sharding.batch_sharding(mesh, 2)
  tokens = sds((shape.questions, shape.prompt_len), jnp.int32, sharding=batch)
  valid = sds(tokens.shape, jnp.bool_, sharding=batch)
  length = shape.prompt_len + shape.max_decode_steps  # largest bucket
  state_shape = jax.eval_shape(functools.partial(
      kernels.init_state, cfg, shape.num_slots, length, shape.num_stops))
  state = _sharded(mesh, rules, state_shape,
                   kernels.state_specs(state_shape))
  stop = sds((shape.num_stops, 2, cfg.vocab_size), jnp.int32,
             sharding=sharding.replicated(mesh))
  sampler = kernels.Sampler(temperature=0.7, top_k=40, top_p=1.0, eos_ids=(2,),
                            max_steps=shape.max_decode_steps)
  with mesh, nn.logical_axis_rules(rules):
    prefill = kernels.prefill.lower(
        cfg, params, tokens, valid, prefix)
    chunk = kernels.decode_chunk.lower(
        cfg, sampler, shape.prompt_len, params, state, decode_prefix, stop,
        jax.ShapeDtypeStruct(stop.shape, jnp.bool_, sharding=stop.sharding))
    return [_program('prefill', prefill), _program('decode_chunk', chunk)]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainShape:
  """One train step (gin/runs/finetune.gin: batch 32, 1024 + 256 tokens)."""

  batch_size: int = 32  # BATCH_SIZE (preference: pairs, 2 rows each)
  length: int = 1280  # TASK_FEATURE_LENGTHS inputs + targets
  optimizer: str = 'adafactor'  # OPTIMIZER
  grad_accum_steps: int = 1
  learner: str = 'sft'  # or 'preference' (ScPO; lmsi.trainer.preference)

  @property
  def rows(self) -> int:
    """Rows a step runs: a pair is a chosen and a rejected row."""
    return self.batch_size * (2 if self.learner == 'preference' else 1)


def compile_train(cfg: decoder_lib.DecoderConfig, mesh: Mesh,
                  shape: TrainShape) -> list[Program]:
  """Compiles the train step on `mesh` (optimizer state sharded as
  `train_state.init_or_restore` places it). The preference learner's step
  takes 2 x batch_size rows and their stored reference log-probs and pair
  weights ([rows, 1] each): no reference model is resident."""
  rules = sharding.logical_axis_rules(for_sampling=False)
  params = abstract_params(cfg, mesh, rules)
  tx = step_lib.make_optimizer(shape.optimizer, 5e-5)
  batch_sh = sharding.batch_sharding(mesh, 2)
  rows = (shape.rows, shape.length)
  batch = {k: jax.ShapeDtypeStruct(rows, dt, sharding=batch_sh) for k, dt in
           (('tokens', jnp.int32), ('valid', jnp.bool_),
            ('labels', jnp.int32), ('weights', jnp.float32))}
  if shape.learner == 'preference':
    batch.update({k: jax.ShapeDtypeStruct((shape.rows, 1), jnp.float32,
                                          sharding=batch_sh)
                  for k in ('ref', 'pair_weight')})
  # As `train_state.init_or_restore`: every optimizer-state leaf sharded
  # like its parameter (Adafactor's factored statistics included).
  specs = train_state.optimizer_state_specs(
      tx, params, decoder_lib.logical_param_specs(cfg))
  opt_state = _sharded(mesh, rules, jax.eval_shape(tx.init, params), specs)
  with mesh, nn.logical_axis_rules(rules):
    if shape.learner == 'preference':
      step = preference_lib.make_step(cfg, tx,
                                      preference_lib.PreferenceConfig())
      name = 'preference_step'
    else:
      step = step_lib.make_train_step(cfg, tx, shape.grad_accum_steps)
      name = 'train_step'
    return [_program(name, step.lower(params, opt_state, batch))]


def describe(p: Program, chip: Chip) -> str:
  g = lambda b: f'{b / GiB:.2f}'
  return (f'{p.name}: per chip argument {g(p.argument_bytes)} + output '
          f'{g(p.output_bytes)} - alias {g(p.alias_bytes)} + temp '
          f'{g(p.temp_bytes)} + code {g(p.code_bytes)} = '
          f'{g(p.total_bytes)} GiB of {g(chip.hbm_bytes)} GiB HBM '
          f'({"fits" if p.total_bytes <= chip.hbm_bytes else "DOES NOT FIT"})'
          f'; argument {p.argument_bytes:,} bytes exactly; '
          f'{p.flops:.3e} FLOPs, {p.bytes_accessed:.3e} bytes accessed '
          f'(loop bodies once); compiled in {p.compile_s:.1f} s')


def _main(argv) -> None:
  # pylint: disable=g-import-not-at-top
  import gin
  from absl import flags
  from lmsi.runtime import gin_flags
  fv = flags.FlagValues()
  for define, name, default, help_ in (
      (flags.DEFINE_string, 'stage', 'train', "'sample' or 'train'."),
      (flags.DEFINE_string, 'topology', 'v5e-256', 'Slice: v4-N, v5e-N, '
       'v5p-N, v6e-N (as launch/tpus.py).'),
      (flags.DEFINE_bool, 'fake_cpu', False, 'Compile on as many fake CPU '
       'devices instead of the libtpu topology.'),
      (flags.DEFINE_integer, 'model_axis', 1, "The mesh's 'model' axis."),
      (flags.DEFINE_string, 'remat', 'none', 'DecoderConfig.remat_policy.'),
      (flags.DEFINE_bool, 'scan', False, 'DecoderConfig.scan_layers.'),
      (flags.DEFINE_integer, 'logits_chunk', 0,
       'DecoderConfig.logits_chunk (the loss\'s LM head in chunks).'),
      (flags.DEFINE_string, 'param_dtype', None, 'Params dtype override.'),
      (flags.DEFINE_string, 'dtype', None, 'Activations dtype override.'),
      (flags.DEFINE_integer, 'batch_size', 32, 'Train rows per step.'),
      (flags.DEFINE_integer, 'length', 1280, 'Train row length.'),
      (flags.DEFINE_integer, 'grad_accum_steps', 1, 'Micro-batches.'),
      (flags.DEFINE_string, 'optimizer', 'adafactor', "Train optimizer: "
       "'adafactor' (the paper's) or 'adamw'."),
      (flags.DEFINE_string, 'learner', 'sft', "Train learner: 'sft' (the "
       "paper's) or 'preference' (ScPO; --batch_size counts pairs)."),
      (flags.DEFINE_integer, 'num_slots', 512, 'Sampling slots.'),
      (flags.DEFINE_integer, 'questions', 64, 'Prompts per prefill call.'),
      (flags.DEFINE_float, 'mfu', 0.4, 'Assumed train MFU.'),
      (flags.DEFINE_float, 'decode_efficiency', 0.5,
       'Assumed fraction of the decode roofline.')):
    define(name, default, help_, flag_values=fv)
  gin_args = [a for a in argv if a.startswith('--gin')]
  fv([argv[0]] + [a for a in argv[1:] if not a.startswith('--gin')])
  gin_flags.parse(gin_args)
  cfg = gin_flags.resolve(gin.query_parameter('%MODEL_CONFIG'))
  over = {k: v for k, v in (('param_dtype', fv.param_dtype),
                            ('dtype', fv.dtype)) if v}
  cfg = dataclasses.replace(cfg, remat_policy=fv.remat, scan_layers=fv.scan,
                            logits_chunk=fv.logits_chunk, **over)
  chip, chips, _ = parse_slice(fv.topology)
  if fv.fake_cpu:  # before JAX's CPU backend starts
    jax.config.update('jax_num_cpu_devices', chips)
  tgt = target(fv.topology, fv.fake_cpu)
  mesh, rnd = mesh_for(tgt, fv.model_axis), roofline_lib.Round()
  kind = 'fake CPU' if fv.fake_cpu else 'libtpu'
  print(f'{fv.topology} ({tgt.topology}, {kind} devices), mesh '
        f'{dict(mesh.shape)}, {chip}; '
        f'{roofline_lib.matmul_params(cfg):,} matmul params, {cfg}')
  if fv.stage == 'sample':
    shape = SampleShape(num_slots=fv.num_slots, questions=fv.questions)
    programs = compile_sample(cfg, mesh, shape)
    times = roofline_lib.sample_seconds(cfg, programs, shape, tgt,
                                        fv.decode_efficiency, rnd)
    context = shape.prefix_len + shape.prompt_len + shape.max_decode_steps
    times['analytic_decode_step_flops_per_chip'] = roofline_lib.model_flops(
        cfg, shape.num_slots, context) / chips
  else:
    shape = TrainShape(batch_size=fv.batch_size, length=fv.length,
                       grad_accum_steps=fv.grad_accum_steps,
                       optimizer=fv.optimizer, learner=fv.learner)
    programs = compile_train(cfg, mesh, shape)
    times = roofline_lib.train_seconds(cfg, shape, tgt, fv.mfu, rnd)
  for p in programs:
    print(describe(p, chip))
  print(f'estimate ({rnd}; train MFU {fv.mfu}, decode {fv.decode_efficiency}'
        f' of roofline, no ICI model): ' + ', '.join(
            f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}'
            for k, v in times.items()))


if __name__ == '__main__':
  import sys  # pylint: disable=g-import-not-at-top
  _main(sys.argv)
