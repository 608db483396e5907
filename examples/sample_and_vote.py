"""Load a model, sample m chain-of-thought paths for a question, vote.

    python examples/sample_and_vote.py

The demo's pretrained base (assets/demo_base) on one of its arithmetic
questions: 16 paths at T 0.7, top-k 40, the answer after "The answer is",
the majority vote. README.md, "Python API", shows this file; a test runs it.
"""

from lmsi import checkpoints, data, sampling, voting
from lmsi.data import exemplars

model = checkpoints.load_model('assets/demo_base')  # config, params, vocab
question = ('Ann has 9 jars. She sells 5. She gives away 2. She gets 9. '
            'She sells 6. How many jars now?')
prompt = data.render(data.Format.COT_FEWSHOT, question,
                     exemplars.get('arithmetic', 2))
config = sampling.SamplingConfig(num_samples=16, temperature=0.7, top_k=40,
                                 max_decode_steps=56, seed=0)
paths = sampling.generate(model.config, model.params, model.vocab, [prompt],
                          ['ann-jars'], config).texts[0]
vote = voting.majority_vote([data.extract_answer(p, 'number') for p in paths])
print(f'path 0 of {len(paths)}: {paths[0]!r}')
print(f'majority answer {vote.answer}: {vote.votes} of {vote.num_samples} '
      'paths agree')
