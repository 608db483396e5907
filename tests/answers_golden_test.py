"""Golden answer extraction: realistic generations per family (stage 4 input).

One row per case: (generation, expected canonical answer or None). None
means unparseable: such a path is excluded from the vote (PAPER.md step 4).
Generations are what a few-shot CoT model writes after "A:", including the
continuation a sampler cuts at the next blank line.
"""

import pytest

from lmsi.data import answers
from lmsi.data import prompts

# ---------------------------------------------------------------- numbers
NUMBER_CASES = [
    # Correct, in the exemplars' style.
    ('Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips '
     'altogether in April and May. The answer is 72.', '72'),
    ('Weng earns 12/60 = $0.2 per minute. Working 50 minutes, she earned '
     '0.2 x 50 = $10. The answer is 10.', '10'),
    ('Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every '
     'day at the farmer’s market. The answer is 18.', '18'),
    ('The answer is $18.', '18'),
    ('The answer is $ 18.', '18'),
    ('The answer is 18 dollars.', '18'),
    ('The answer is 1,080.', '1080'),
    ('The answer is 109,200,000 pounds.', '109200000'),
    ('The answer is $1,234.50.', '1234.5'),
    ('The answer is 0.5.', '0.5'),
    ('The answer is .5 hours.', '0.5'),
    ('The answer is 12.00.', '12'),
    ('The answer is 3.50 dollars an hour.', '3.5'),
    ('The answer is -3.', '-3'),
    ('The temperature fell below zero. The answer is −4 degrees.', '-4'),
    ('The answer is 007.', '7'),
    ('The answer is 50%.', '50'),
    ('The answer is 60 miles per hour.', '60'),
    ('The answer is 5 km/h.', '5'),
    ('The answer is 45 minutes.', '45'),
    ('The answer is 2 hours and 30 minutes.', '2'),
    ('The answer is 624 pages a year.', '624'),
    ('The answer is: 15', '15'),
    ('The answer is:\n15', '15'),
    ('So the answer is 25.', '25'),
    ('Therefore, the answer is 25.', '25'),
    ('THE ANSWER IS 25.', '25'),
    ('the answer is 25', '25'),
    ('The answer is 25!', '25'),
    ('The answer is (25).', '25'),
    ('The answer is "25".', '25'),
    ('The answer is **25**.', '25'),
    ('The answer is x = 25.', '25'),
    ('The answer is 1000000.', '1000000'),
    ('The answer is 1,000,000.', '1000000'),
    # Multiple numbers: the first one after the prefix.
    ('The answer is 5 + 3 = 8.', '5'),
    ('The answer is 8 apples and 3 oranges.', '8'),
    ('He has 3 + 4 = 7 cars, 2 bikes and 9 balls. The answer is 7.', '7'),
    ('There are 15 trees. 21 - 15 = 6. The answer is 6. Then 3 more.', '6'),
    ('The answer is 6. The answer is 7.', '6'),
    ('The answer is 12 and 14 is wrong.', '12'),
    ('The answer is 2, 3 and 4.', '2'),
    ('The answer is 1,2,3.', '1'),
    # A fraction is its value, never its numerator.
    ('The answer is 3/4.', '0.75'),
    ('So the answer is 1/2 x 2 = 2 cups. The answer is 2.', '0.5'),
    ('The answer is 1/2 cup of sugar.', '0.5'),
    ('The answer is 12/60 = 0.2 hours.', '0.2'),
    ('The answer is -3/4.', '-0.75'),
    ('The answer is 1 / 4.', '0.25'),
    ('The answer is 10/2 = 5 apples.', '5'),
    ('The answer is 1/3 of the pizza.', None),
    ('The answer is 3/0.', None),
    ('The answer is 2 1/2 cups.', None),
    ('The answer is 3/4/2020.', None),
    ('The answer is 60 km/h.', '60'),
    # Wrong but parseable: the vote, not the parser, judges them.
    ('15 + 6 = 22. The answer is 22.', '22'),
    ('She has 5 * 3 = 16 apples. The answer is 16.', '16'),
    ('The answer is 0.', '0'),
    ('The answer is -0.', '0'),
    # The continuation of a few-shot prompt never leaks a number.
    ('The answer is unclear.\n\nQ: There are 15 trees in the grove.', None),
    ('The answer is\n\nQ: Leah had 32 chocolates.', None),
    ('She sells 9 eggs.\nQ: Olivia has $23. The answer is 8.', '8'),
    # Malformed or missing.
    ('', None),
    ('Janet sells 9 eggs for $2 each, so she makes $18.', None),
    ('The answer is', None),
    ('The answer is unknown.', None),
    ('The answer is eighteen.', None),
    ('The answer is x2.', None),
    ("The answer isn't 5.", None),
    ('The answers are 5 and 6.', None),
    ('Answer: 18', None),
    ('#### 18', None),
    ('The answer is 1e5.', '1'),
    ('The answer is a number.', None),
]

# ---------------------------------------------------------------- letters
ARC_Q = prompts.choice_question(
    'George wants to warm his hands quickly by rubbing them. Which skin '
    'surface will produce the most heat?',
    ['dry palms', 'wet palms', 'palms covered with oil',
     'palms covered with lotion'])
OBQA_Q = prompts.choice_question(
    'What happens when mercury is placed in water?',
    ['it dissolves', 'it sinks', 'it floats', 'it hardens'])
FIVE_Q = prompts.choice_question(
    'Which unit measures force?',
    ['meter', 'newton', 'joule', 'watt', 'kilogram'])
ARC = prompts.options_of(ARC_Q)
OBQA = prompts.options_of(OBQA_Q)
FIVE = prompts.options_of(FIVE_Q)

LETTER_CASES = [
    # The exemplars' own style and its variants.
    ('Dry skin makes the most friction. The answer is (a).', ARC, 'A'),
    ('The answer is (b).', ARC, 'B'),
    ('The answer is (B).', ARC, 'B'),
    ('The answer is (c)', ARC, 'C'),
    ('The answer is (d) palms covered with lotion.', ARC, 'D'),
    ('The answer is B).', ARC, 'B'),
    ('The answer is b) wet palms.', ARC, 'B'),
    ('The answer is b.', ARC, 'B'),
    ('The answer is B.', ARC, 'B'),
    ('The answer is B', ARC, 'B'),
    ('So the answer is c.', ARC, 'C'),
    ('the answer is d', ARC, 'D'),
    ('THE ANSWER IS (A).', ARC, 'A'),
    ('The answer is: (b)', ARC, 'B'),
    ('The answer is: B', ARC, 'B'),
    ('The answer is option C.', ARC, 'C'),
    ('The answer is choice (d).', ARC, 'D'),
    ('The answer is a.', ARC, 'A'),
    ('The answer is A.', ARC, 'A'),
    ('The answer is (a) dry palms.', ARC, 'A'),
    ('The answer is (e).', FIVE, 'E'),
    ('The answer is E) kilogram.', FIVE, 'E'),
    ('The answer is (b) newton.', FIVE, 'B'),
    # Option text instead of a letter.
    ('The answer is dry palms.', ARC, 'A'),
    ('The answer is wet palms.', ARC, 'B'),
    ('The answer is palms covered with oil.', ARC, 'C'),
    ('The answer is Palms Covered With Lotion.', ARC, 'D'),
    ('The answer is "dry palms".', ARC, 'A'),
    ('The answer is it sinks.', OBQA, 'B'),
    ('The answer is it floats!', OBQA, 'C'),
    ('Mercury is denser than water. The answer is it sinks, since it is '
     'dense.', OBQA, 'B'),
    ('The answer is newton.', FIVE, 'B'),
    ('The answer is a newton.', FIVE, 'B'),
    ('The answer is the newton.', FIVE, 'B'),
    ('The answer is kilogram.', FIVE, 'E'),
    # The letter wins over contradicting text.
    ('The answer is (c) dry palms.', ARC, 'C'),
    # Wrong but parseable.
    ('Oil makes skin slippery. The answer is (c).', ARC, 'C'),
    ('The answer is (d).', OBQA, 'D'),
    # Multiple answers: the first prefix only, the first letter only.
    ('The answer is (a). The answer is (b).', ARC, 'A'),
    ('The answer is (a) or (b).', ARC, 'A'),
    ('The answer is b, not c.', ARC, 'B'),
    # Continuations do not leak.
    ('The answer is unclear.\n\nQ: Which gas do plants use? (a) oxygen',
     ARC, None),
    ('The answer is\n(b)', ARC, 'B'),
    # Malformed or missing.
    ('', ARC, None),
    ('(B) is correct.', ARC, None),
    ('Dry palms make the most heat.', ARC, None),
    ('The answer is', ARC, None),
    ('The answer is (f).', ARC, None),
    ('The answer is F.', ARC, None),
    ('The answer is 2.', ARC, None),
    ('The answer is (2).', ARC, None),
    ('The answer is Bob.', ARC, None),
    ('The answer is banana.', ARC, None),
    ('The answer is dry.', ARC, None),
    ('The answer is palms.', ARC, None),
    ('The answer is dry palms covered.', ARC, 'A'),
    ('The answer is a dry palm.', ARC, None),
    ('The answer is none of the above.', ARC, None),
    ('The answer is all of them.', ARC, None),
    ('The answer is wet palms.', None, None),
    ('The answer is it sinks.', (), None),
    ('The answer is sinks.', OBQA, None),
    ("The answer isn't (b).", ARC, None),
]

# -------------------------------------------------------------------- NLI
NLI_CASES = [
    ('The premise says he died on June 11, 1936. The answer is yes.',
     'entailment'),
    ('The answer is yes.', 'entailment'),
    ('The answer is Yes.', 'entailment'),
    ('The answer is YES', 'entailment'),
    ('The answer is yes, he died in 1936.', 'entailment'),
    ('The answer is "yes".', 'entailment'),
    ('The answer is - yes', 'entailment'),  # copied from OPTIONS
    ('So the answer is yes', 'entailment'),
    ('The answer is: yes', 'entailment'),
    ('The answer is\nyes', 'entailment'),
    ('The answer is no.', 'contradiction'),
    ('The answer is No.', 'contradiction'),
    ('The answer is NO', 'contradiction'),
    ('She played only 14 matches. The answer is no.', 'contradiction'),
    ('The answer is no, she played 14.', 'contradiction'),
    ('The answer is "no".', 'contradiction'),
    ('The answer is: no', 'contradiction'),
    ('The answer is it is not possible to tell.', 'neutral'),
    ('The answer is It is not possible to tell.', 'neutral'),
    ('The answer is it is not possible to tell', 'neutral'),
    ("The answer is it's not possible to tell.", 'neutral'),
    ('The answer is it’s not possible to tell.', 'neutral'),
    ('The answer is not possible to tell.', 'neutral'),
    ('The answer is "it is not possible to tell".', 'neutral'),
    ('The premise never says where she lives. The answer is it is not '
     'possible to tell.', 'neutral'),
    ('The answer is it is not possible to tell, since the premise is '
     'silent.', 'neutral'),
    ('The answer is entailment.', 'entailment'),
    ('The answer is Entailment.', 'entailment'),
    ('The answer is contradiction.', 'contradiction'),
    ('The answer is neutral.', 'neutral'),
    ('The answer is Neutral', 'neutral'),
    # Wrong but parseable.
    ('He died in 1936, in the 30s. The answer is no.', 'contradiction'),
    ('The answer is yes. The answer is no.', 'entailment'),
    ('The answer is yes or no.', 'entailment'),
    # Continuations do not leak.
    ('The answer is unclear.\n\nQ: Premise: "..." OPTIONS: - yes', None),
    ('The answer is\n\nQ: Premise: yes', None),
    # Malformed, hedged or missing.
    ('', None),
    ('yes', None),
    ('Yes, the hypothesis is true.', None),
    ('The hypothesis is true.', None),
    ('The answer is', None),
    ('The answer is maybe.', None),
    ('The answer is nope.', None),
    ('The answer is yeah.', None),
    ('The answer is true.', None),
    ('The answer is false.', None),
    ('The answer is unknown.', None),
    ('The answer is possibly.', None),
    ('The answer is it is possible to tell.', None),
    ('The answer is it is impossible to tell.', None),
    ('The answer is not.', None),
    ('The answer is none.', None),
    ('The answer is nothing.', None),
    ('The answer is e.', None),
    ('The answer is n', None),
    ('The answer is c.', None),
    ('The answer is (a).', None),
    ('The answer is 1.', None),
    ('The answer is yesterday.', None),
    ('The answer is notable.', None),
    ("The answer isn't yes.", None),
    ('The answers are yes and no.', None),
    ('The answer is it is not.', None),
]


YESNO_CASES = [
    ('Hamsters are prey animals. The answer is yes.', 'yes'),
    ('The answer is No.', 'no'),
    ('The answer is no, it could not.', 'no'),
    ('The answer is "yes".', 'yes'),
    ('The answer is nope.', None),
    ('The answer is it is not possible to tell.', None),
    ('The answer is true.', None),
    ('yes', None),
]


@pytest.mark.parametrize('text,want', YESNO_CASES)
def test_yesno(text, want):
  assert answers.extract_answer(text, 'yesno') == want


def test_at_least_sixty_cases_per_family():
  assert min(len(NUMBER_CASES), len(LETTER_CASES), len(NLI_CASES)) >= 60


@pytest.mark.parametrize('text,want', NUMBER_CASES)
def test_number(text, want):
  assert answers.extract_answer(text, 'number') == want


@pytest.mark.parametrize('text,options,want', LETTER_CASES)
def test_letter(text, options, want):
  assert answers.extract_answer(text, 'letter', options=options) == want


@pytest.mark.parametrize('text,want', NLI_CASES)
def test_nli(text, want):
  assert answers.extract_answer(text, 'nli') == want


@pytest.mark.parametrize('family,gold', [
    ('number', '72'), ('number', '0.5'), ('number', '-3'), ('letter', 'A'),
    ('letter', 'E'), ('nli', 'entailment'), ('nli', 'neutral'),
    ('nli', 'contradiction'), ('yesno', 'yes'), ('yesno', 'no')])
def test_answer_text_round_trips(family, gold):
  text = answers.answer_text(gold, family)
  assert answers.extract_answer(f'The answer is {text}.', family) == gold


def test_gold_spellings():
  assert answers.answer_text('B', 'letter') == '(b)'
  assert answers.answer_text('n', 'nli') == 'it is not possible to tell'
  assert answers.canonical_answer('c', 'nli') == 'contradiction'
  assert answers.canonical_answer('1,080', 'number') == '1080'
  assert answers.canonical_answer('True', 'yesno') == 'yes'
  with pytest.raises(ValueError, match='not a valid letter answer'):
    answers.answer_text('F', 'letter')
