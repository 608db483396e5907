"""Every few-shot exemplar set, by name (LMSI stage 2 data).

`get(name, num=None)` returns a set (or its first `num`); `register(name,
exemplars)` adds one (a task module of your own, see docs/tasks.md). Pure
strings; the direct-answer exemplars are these with the reasoning removed
(`prompts.render`). Answers are written as `answers.answer_text` writes
them: "The answer is 72.", "The answer is (b).", "The answer is it is not
possible to tell.".

  * 'arithmetic' (2-shot): hand-written easy problems in the embedded
    task's seed style (one or two steps), never drawn from any split.

The benchmark sets follow the paper's prompt style (App. A) and use
questions from the task's training split:

  * 'gsm8k' (8-shot CoT): GSM8K train questions; the reasoning is the
    official solution via `tasks.gsm8k.rationale` (calculator annotations
    removed).
  * 'arc' (4-shot): ARC-Challenge train questions, options "(a) ... (b)
    ..."; rationales written for lmsi. Also used for ARC-Easy.
  * 'openbookqa' (4-shot): OpenBookQA train questions, rationales ours.
  * 'anli' (6-shot, two per label): ANLI has no train file in the data
    snapshot, so the questions are from R1 dev (not a pool of the paper's
    study, which uses A2/A3); rationales ours.

`tests/benchmarks_test.py` checks every benchmark exemplar against the
release files: the question is verbatim, the answer is the gold label, and
each reasoning ends with an answer that parses to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from lmsi.data.prompts import Exemplar
from lmsi.data.prompts import choice_question
from lmsi.data.prompts import nli_question

ARITHMETIC = (
    Exemplar(question='Kim has 4 mugs. She buys 3. How many mugs now?',
             reasoning='4 + 3 = 7. The answer is 7.', answer='7'),
    Exemplar(question='Lou has 9 cans. He sells 5. He gets 2. '
                      'How many cans now?',
             reasoning='9 - 5 = 4. 4 + 2 = 6. The answer is 6.', answer='6'),
)

# GSM8K train lines 1, 2, 5, 15, 49, 71, 159, 177.
GSM8K = (
    Exemplar(
        question='Natalia sold clips to 48 of her friends in April, and then '
        'she sold half as many clips in May. How many clips did Natalia sell '
        'altogether in April and May?',
        reasoning='Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = '
        '72 clips altogether in April and May. The answer is 72.',
        answer='72'),
    Exemplar(
        question='Weng earns $12 an hour for babysitting. Yesterday, she just '
        'did 50 minutes of babysitting. How much did she earn?',
        reasoning='Weng earns 12/60 = $0.2 per minute. Working 50 minutes, '
        'she earned 0.2 x 50 = $10. The answer is 10.',
        answer='10'),
    Exemplar(
        question='James writes a 3-page letter to 2 different friends twice a '
        'week.  How many pages does he write a year?',
        reasoning='He writes each friend 3*2=6 pages a week. So he writes '
        '6*2=12 pages every week. That means he writes 12*52=624 pages a '
        'year. The answer is 624.',
        answer='624'),
    Exemplar(
        question='Joy can read 8 pages of a book in 20 minutes. How many hours '
        'will it take her to read 120 pages?',
        reasoning='In one hour, there are 3 sets of 20 minutes. So, Joy can '
        'read 8 x 3 = 24 pages in an hour. It will take her 120/24 = 5 hours '
        'to read 120 pages. The answer is 5.',
        answer='5'),
    Exemplar(
        question='Sam memorized six more digits of pi than Carlos memorized. '
        'Mina memorized six times as many digits of pi as Carlos memorized. '
        'If Mina memorized 24 digits of pi, how many digits did Sam memorize?',
        reasoning='Carlos memorized 24/6=4 digits of pi. Sam memorized 4+6=10 '
        'digits of pi. The answer is 10.',
        answer='10'),
    Exemplar(
        question='Tim has 30 less apples than Martha, and Harry has half as '
        'many apples as Tim. If Martha has 68 apples, how many apples does '
        'Harry have?',
        reasoning='Tim has 68-30 = 38 apples. Harry has 38/2 = 19 apples. The '
        'answer is 19.',
        answer='19'),
    Exemplar(
        question='Jerome is taking a 150-mile bicycle trip. He wants to ride '
        '12 miles for 12 days. How long will he ride on the 13th day to '
        'finish his goal?',
        reasoning='Jerome rides a total of 12 x 12 = 144 miles in 12 days. '
        'So, he will ride 150 - 144 = 6 miles on the 13th day to finish his '
        'goal. The answer is 6.',
        answer='6'),
    Exemplar(
        question='A store sells 20 packets of 100 grams of sugar every week. '
        'How many kilograms of sugar does it sell every week?',
        reasoning='A total of 20 x 100 = 2000 grams are sold every week. '
        'Since 1 kilogram is equal to 1000 grams, then 2000/1000 = 2 '
        'kilograms of sugar are sold every week. The answer is 2.',
        answer='2'),
)

# ARC-Challenge train: Mercury_SC_415702, MCAS_2009_5_6516, MCAS_2007_8_5180,
# Mercury_7041615.
ARC = (
    Exemplar(
        question=choice_question(
            'George wants to warm his hands quickly by rubbing them. Which '
            'skin surface will produce the most heat?',
            ['dry palms', 'wet palms', 'palms covered with oil',
             'palms covered with lotion']),
        reasoning='Rubbing turns motion into heat through friction. Water, '
        'oil and lotion make skin slippery and lower the friction, so dry '
        'palms produce the most heat. The answer is (a).',
        answer='(a)'),
    Exemplar(
        question=choice_question(
            'Which of the following statements best explains why magnets '
            'usually stick to a refrigerator door?',
            ['The refrigerator door is smooth.',
             'The refrigerator door contains iron.',
             'The refrigerator door is a good conductor.',
             'The refrigerator door has electric wires in it.']),
        reasoning='Magnets attract materials that contain iron, such as '
        'steel. A refrigerator door is made of steel, so a magnet sticks to '
        'it because the door contains iron. The answer is (b).',
        answer='(b)'),
    Exemplar(
        question=choice_question(
            'Which of the following areas is most likely to form metamorphic '
            'rocks such as gneiss and schist?',
            ['a sea floor', 'a windblown desert', 'a site deep underground',
             'a site covered by a glacier']),
        reasoning='Metamorphic rocks form when existing rock is changed by '
        'high heat and pressure. Heat and pressure are highest deep '
        'underground. The answer is (c).',
        answer='(c)'),
    Exemplar(
        question=choice_question(
            'Which of these do scientists offer as the most recent '
            'explanation as to why many plants and animals died out at the '
            'end of the Mesozoic era?',
            ['worldwide disease', 'global mountain building',
             'rise of mammals that preyed upon plants and animals',
             'impact of an asteroid created dust that blocked the sunlight']),
        reasoning='The accepted explanation for the extinction at the end of '
        'the Mesozoic era is an asteroid impact. Its dust blocked sunlight, '
        'so plants died and then the animals that ate them. The answer is '
        '(d).',
        answer='(d)'),
)

# OpenBookQA train: 7-980, 9-782, 8-72, 7-321.
OPENBOOKQA = (
    Exemplar(
        question=choice_question(
            'The sun is responsible for',
            ['puppies learning new tricks',
             'children growing up and getting old',
             'flowers wilting in a vase',
             'plants sprouting, blooming and wilting']),
        reasoning='The sun is the source of energy for the life cycles of '
        'plants. Plants sprouting, blooming and wilting is such a cycle. The '
        'answer is (d).',
        answer='(d)'),
    Exemplar(
        question=choice_question(
            'Poison causes harm to which of the following?',
            ['a Tree', 'a robot', 'a house', 'a car']),
        reasoning='Poison harms living things. A tree is alive, and a robot, '
        'a house and a car are not. The answer is (a).',
        answer='(a)'),
    Exemplar(
        question=choice_question(
            'What happens when mercury is placed in water?',
            ['it dissolves', 'it sinks', 'it floats', 'it hardens']),
        reasoning='Mercury is a liquid metal that is much denser than water '
        'and does not dissolve in it. Something denser than water sinks. '
        'The answer is (b).',
        answer='(b)'),
    Exemplar(
        question=choice_question(
            'Stars are',
            ['warm lights that float', 'made out of nitrate',
             'great balls of gas burning billions of miles away',
             'lights in the sky']),
        reasoning='A star is a huge ball of hot gas that burns by nuclear '
        'fusion, very far from Earth. The answer is (c).',
        answer='(c)'),
)

# ANLI R1 dev: f4349da1, 356f03f4, dc99d0fa, d4fcd83a, 5c8a1c1f, 8b86f187.
ANLI = (
    Exemplar(
        question=nli_question(
            'Robert Ervin Howard (January 22, 1906 – June 11, 1936) was an '
            'American author who wrote pulp fiction in a diverse range of '
            'genres. He is well known for his character Conan the Barbarian '
            'and is regarded as the father of the sword and sorcery '
            'subgenre.',
            "Robert Ervin Howard died in the 30's"),
        reasoning='The premise says Robert Ervin Howard died on June 11, '
        '1936, and 1936 is in the 1930s. The answer is yes.',
        answer='yes'),
    Exemplar(
        question=nli_question(
            'Kamila Filipcikova (born 1991) is a female Slovakian fashion '
            'model. She has modeled in fashion shows for designers such as '
            'Marc Jacobs, Chanel, Givenchy, Dolce & Gabbana, and Sonia '
            'Rykiel. And appeared on the cover of Vogue Italia two times in '
            'a row.',
            'Filipcikova lives in Italy.'),
        reasoning='The premise says she is Slovakian and was on the cover of '
        'Vogue Italia, but it never says where she lives. The answer is it '
        'is not possible to tell.',
        answer='it is not possible to tell'),
    Exemplar(
        question=nli_question(
            'Mary Cecilia Robinson (born 22 May 1924 in Canterbury, Kent) is '
            "a former cricketer who played 14 Test matches for the England "
            "women's cricket team between 1948/49 and 1963. A right hand "
            'opening batsman she scored two Test centuries against '
            'Australia.',
            "Mary Cecilia has won 18 test matches for England women's "
            'cricket team between 1948 and 1963'),
        reasoning='The premise says she played 14 Test matches for England '
        'in those years. She cannot have won 18 matches if she played only '
        '14. The answer is no.',
        answer='no'),
    Exemplar(
        question=nli_question(
            'Lisa Picard is Famous, also known as Famous, is a 2000 '
            'comedy-drama film directed by Griffin Dunne and written by Nat '
            'DeWolf & Laura Kirk. The film stars Kirk, DeWolf, Dunne, Daniel '
            'London, and a large number of famous actors in cameos as '
            'themselves.',
            'Griffin Dunne has directed horror films.'),
        reasoning='The premise only says that Griffin Dunne directed this '
        'comedy-drama. It says nothing about the other films he directed. '
        'The answer is it is not possible to tell.',
        answer='it is not possible to tell'),
    Exemplar(
        question=nli_question(
            'Admiral Edward Stafford Fitzherbert, 13th Baron Stafford, KCB '
            '(17 April 1864 – 28 September 1941) was an English peer, '
            'holding the title Baron Stafford. He was also a Royal Navy '
            'officer who went on to be Commander-in-Chief, Cape of Good Hope '
            'Station.',
            'Admiral Edward Stafford Fitzherbert was a Navy officer in great '
            'Britains naval forces'),
        reasoning='The premise says he was a Royal Navy officer, and the '
        "Royal Navy is Great Britain's naval force. The answer is yes.",
        answer='yes'),
    Exemplar(
        question=nli_question(
            'The Unlawful Trade is a 1914 American silent short drama film '
            'directed by Allan Dwan and starring Pauline Bush, William '
            'Lloyd, George Cooper, and Lon Chaney. George Cooper and '
            'directed Allan Dwan also wrote the script. The film is now '
            'considered lost.',
            'The Unlawful Trade stars Pauline Bush, Christopher Lloyd, George '
            'Cooper, and Lon Chaney.'),
        reasoning='The premise names William Lloyd among the stars, not '
        'Christopher Lloyd. The answer is no.',
        answer='no'),
)

SETS: dict[str, tuple[Exemplar, ...]] = {
    'arithmetic': ARITHMETIC, 'gsm8k': GSM8K, 'arc': ARC,
    'openbookqa': OPENBOOKQA, 'anli': ANLI}


def register(name: str, exemplars: Sequence[Exemplar]) -> None:
  """Adds (or replaces) the exemplar set `name`."""
  SETS[name] = tuple(exemplars)


def get(name: str, num: int | None = None) -> tuple[Exemplar, ...]:
  """The exemplar set `name`, optionally only its first `num`.

  Raises:
    KeyError: naming the unknown set and the known ones.
  """
  if name not in SETS:
    raise KeyError(f'unknown exemplar set {name!r}; known: {sorted(SETS)}')
  return SETS[name][:num]
