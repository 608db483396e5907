"""Tests for final-answer extraction (LMSI stage 4 input)."""

from absl.testing import absltest
from absl.testing import parameterized

from lmsi.data import answers

_CSQA_OPTIONS = ('ocean', 'bank', 'bank account', 'grocery store', 'river')

# (name, generation, family, expected, options).
_EXTRACTION_CASES = (
    # Arithmetic (GSM8K-style) generations.
    ('gsm8k_correct', 'Janet sells 16 - 3 - 4 = 9 eggs. She makes 9 * 2 = 18 '
     'dollars. The answer is 18.', 'number', '18', None),
    ('units_ignored', 'The answer is 18 dollars.', 'number', '18', None),
    ('dollar_commas_decimal', 'The answer is $1,234.50.', 'number', '1234.5',
     None),
    ('dollar_sign', 'So he spent 3 * 6 = 18. The answer is $18.', 'number',
     '18', None),
    ('trailing_zero', 'The answer is 12.0.', 'number', '12', None),
    ('two_trailing_zeros', 'The answer is 12.00', 'number', '12', None),
    ('decimal_trailing_zero', 'The answer is 3.50 hours.', 'number', '3.5',
     None),
    ('negative_zero', 'The answer is -0.', 'number', '0', None),
    ('negative', 'The temperature drops 10 degrees. The answer is -7.',
     'number', '-7', None),
    ('unicode_minus', 'The answer is −7.', 'number', '-7', None),
    ('fraction_decimal', 'The answer is 0.25.', 'number', '0.25', None),
    ('leading_zeros', 'The answer is 007.', 'number', '7', None),
    ('millions', 'So THE ANSWER IS 1,000,000 people.', 'number', '1000000',
     None),
    ('lowercase_prefix', 'the answer is 42', 'number', '42', None),
    ('colon', 'The answer is: 15', 'number', '15', None),
    ('percent', 'The answer is 50%.', 'number', '50', None),
    ('newline_after_prefix', 'The answer is\n 12', 'number', '12', None),
    ('negative_dollars', 'He owes money. The answer is -$5.', 'number', '-5',
     None),
    ('first_number_after_prefix', 'The answer is 5 + 3 = 8.', 'number', '5',
     None),
    ('list_takes_first', 'The answer is 2, 3 and 4.', 'number', '2', None),
    ('numbers_before_prefix_ignored', 'There are 3 cars and 2 more arrive, '
     'so 3 + 2 = 5. The answer is 5. Then 7 more leave.', 'number', '5',
     None),
    ('first_prefix_wins', 'The answer is 8. The answer is 9.', 'number', '8',
     None),
    ('wrong_but_parsed', '15 + 6 = 22. The answer is 22.', 'number', '22',
     None),
    ('words_after_prefix', 'The answer is: Janet has 18 apples.', 'number',
     '18', None),
    ('number_inside_word', 'The answer is x2.', 'number', None, None),
    ('fraction_is_its_value', 'So the answer is 1/2 x 2 = 2 cups. The answer '
     'is 2.', 'number', '0.5', None),
    ('fraction_eighths', 'The answer is 3/8.', 'number', '0.375', None),
    ('fraction_decimal_denominator', 'The answer is 1/2.5.', 'number', '0.4',
     None),
    ('fraction_negative', 'The answer is −1/2.', 'number', '-0.5', None),
    ('fraction_whole', 'The answer is $1,000/4.', 'number', '250', None),
    ('fraction_tiny', 'The answer is 1/10000000.', 'number', '0.0000001',
     None),
    ('fraction_repeating', 'The answer is 2/3.', 'number', None, None),
    ('fraction_zero_denominator', 'The answer is 3/0.', 'number', None, None),
    ('mixed_number', 'The answer is 2 1/2 cups.', 'number', None, None),
    ('date', 'The answer is 3/4/2020.', 'number', None, None),
    ('slash_unit_not_fraction', 'The answer is 60/hour.', 'number', '60',
     None),
    ('missing_prefix', 'He pays 5 * 4 = 20 dollars.', 'number', None, None),
    ('empty', '', 'number', None, None),
    ('prefix_only', 'The answer is', 'number', None, None),
    ('no_number', 'The answer is unknown.', 'number', None, None),
    ('next_question_not_leaked', 'The answer is unclear.\n\nQ: There are 15 '
     'trees in the grove.', 'number', None, None),
    ('isnt_is_not_prefix', "The answer isn't 5.", 'number', None, None),
    # Multiple-choice (CSQA-style) generations.
    ('paren_lower', 'Money is kept in a bank. So the answer is (b).', 'letter',
     'B', None),
    ('closing_paren', 'The answer is B)', 'letter', 'B', None),
    ('bare_lower', 'The answer is b', 'letter', 'B', None),
    ('bare_upper_period', 'The answer is B.', 'letter', 'B', None),
    ('bare_upper_a', 'The answer is A', 'letter', 'A', None),
    ('paren_a', 'The answer is (a)', 'letter', 'A', None),
    ('paren_with_text', 'The answer is (E) river.', 'letter', 'E', None),
    ('option_word', 'The answer is option C.', 'letter', 'C', None),
    ('letter_beats_text', 'The answer is (D) ocean.', 'letter', 'D',
     _CSQA_OPTIONS),
    ('out_of_range', 'The answer is F.', 'letter', None, None),
    ('word_starting_with_letter', 'The answer is Bob.', 'letter', None, None),
    ('article_then_option_text', 'The answer is a bank.', 'letter', 'B',
     _CSQA_OPTIONS),
    ('longest_option_text', 'The answer is bank account!', 'letter', 'C',
     _CSQA_OPTIONS),
    ('option_text_case', 'Food is sold there. The answer is Grocery Store.',
     'letter', 'D', _CSQA_OPTIONS),
    ('option_text_quoted', 'The answer is "ocean".', 'letter', 'A',
     _CSQA_OPTIONS),
    ('option_text_without_options', 'The answer is grocery store.', 'letter',
     None, None),
    ('option_prefix_not_word', 'The answer is banking.', 'letter', None,
     _CSQA_OPTIONS),
    ('unknown_option_text', 'The answer is banana.', 'letter', None,
     _CSQA_OPTIONS),
    ('letter_missing_prefix', '(B) is correct.', 'letter', None, None),
    # NLI (ANLI / RTE-style) generations.
    ('yes', 'The premise says he is running. The answer is yes.', 'nli',
     'entailment', None),
    ('no_capitalised', 'The answer is No', 'nli', 'contradiction', None),
    ('not_possible', 'The answer is it is not possible to tell.', 'nli',
     'neutral', None),
    ('not_possible_short', 'The answer is not possible to tell', 'nli',
     'neutral', None),
    ('its_not_possible', "The answer is it's not possible to tell.", 'nli',
     'neutral', None),
    ('label_entailment', 'The answer is entailment', 'nli', 'entailment',
     None),
    ('label_neutral', 'The answer is Neutral.', 'nli', 'neutral', None),
    ('label_contradiction', 'The answer is contradiction.', 'nli',
     'contradiction', None),
    ('quoted_yes', 'The answer is "yes".', 'nli', 'entailment', None),
    ('maybe', 'The answer is maybe.', 'nli', None, None),
    ('nope_is_not_no', 'The answer is nope.', 'nli', None, None),
    ('nli_missing_prefix', 'yes', 'nli', None, None),
)


class ExtractAnswerTest(parameterized.TestCase):

  @parameterized.named_parameters(*_EXTRACTION_CASES)
  def test_extract_answer(self, text, family, expected, options):
    self.assertEqual(
        answers.extract_answer(text, family, options=options), expected)

  def test_default_family_is_number(self):
    self.assertEqual(answers.extract_answer('The answer is 3.0.'), '3')

  def test_accepts_enum_family(self):
    self.assertEqual(
        answers.extract_answer('The answer is (c).', answers.Family.LETTER),
        'C')

  def test_unknown_family_raises(self):
    with self.assertRaises(ValueError):
      answers.extract_answer('The answer is 3.', 'date')

  def test_prefix_constant(self):
    self.assertEqual(answers.ANSWER_PREFIX, 'The answer is')
    self.assertEqual(
        answers.extract_answer(answers.ANSWER_PREFIX + ' 4.'), '4')

  def test_family_values(self):
    self.assertEqual([f.value for f in answers.Family],
                     ['number', 'letter', 'nli', 'yesno'])


class NormalizeNumberTest(parameterized.TestCase):

  @parameterized.parameters(
      ('18', '18'),
      ('1,234', '1234'),
      ('1,234,567', '1234567'),
      ('$1,234.50', '1234.5'),
      ('-3', '-3'),
      ('+3', '3'),
      ('-0', '0'),
      ('-0.0', '0'),
      ('12.0', '12'),
      ('12.00', '12'),
      ('12.', '12'),
      ('3.50', '3.5'),
      ('.5', '0.5'),
      ('0.125', '0.125'),
      ('007', '7'),
      ('  72 \n', '72'),
      ('100000000000000000000.5', '100000000000000000000.5'),
      ('', None),
      ('abc', None),
      ('1e5', None),
      ('nan', None),
      ('Infinity', None),
      ('18 dollars', None),
      ('1.2.3', None),
  )
  def test_normalize_number(self, s, expected):
    self.assertEqual(answers.normalize_number(s), expected)


class AnswersEqualTest(parameterized.TestCase):

  @parameterized.parameters(
      ('12', '12.0', 'number', True),
      ('1,000', '1000', 'number', True),
      ('3.5', '3.50', 'number', True),
      ('-0', '0', 'number', True),
      ('3.5', '3.6', 'number', False),
      ('18', '-18', 'number', False),
      ('abc', 'abc', 'number', False),
      (None, None, 'number', False),
      (None, '1', 'number', False),
      ('1', None, 'number', False),
      ('B', 'b', 'letter', True),
      ('(B)', 'B', 'letter', True),
      ('A', 'B', 'letter', False),
      ('F', 'F', 'letter', False),
      (None, 'A', 'letter', False),
      ('yes', 'entailment', 'nli', True),
      ('Neutral', 'it is not possible to tell', 'nli', True),
      ('no', 'contradiction', 'nli', True),
      ('no', 'entailment', 'nli', False),
      ('maybe', 'maybe', 'nli', False),
  )
  def test_answers_equal(self, a, b, family, expected):
    self.assertIs(answers.answers_equal(a, b, family), expected)

  def test_default_family_is_number(self):
    self.assertTrue(answers.answers_equal('7.00', '7'))

  def test_extracted_matches_gsm8k_gold(self):
    predicted = answers.extract_answer('The answer is $1,234.')
    self.assertTrue(answers.answers_equal(predicted, '1,234'))


if __name__ == '__main__':
  absltest.main()
