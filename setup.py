"""lmsi: Large Language Models Can Self-Improve, in JAX (pinned for CPU/TPU).

t5x is not on PyPI, so it is not a dependency: `lmsi/train.py` keeps T5X's
finetune contract on jax + flax + optax + orbax + seqio. `requirements.lock`
pins the whole tree that `make` installs.
"""

import setuptools

setuptools.setup(
    name='lmsi',
    version='0.1.0',
    description='Large Language Models Can Self-Improve (Huang et al., 2022) '
                'in JAX/Flax with SeqIO tasks and a T5X-style trainer.',
    python_requires='>=3.10',
    packages=['lmsi', 'tasks'],
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
        'numpy==2.4.6',
        'matplotlib==3.11.2',
        'tensorboardX==2.6.5',
    ],
    extras_require={
        'test': ['pytest==9.2.0', 'pytest-xdist==3.8.0'],
        'tpu': ['jax[tpu]==0.10.2'],
    },
)
