import pytest

from services.feedback.domain.surveys import (AnswerError, Question, Survey, is_detractor, metric_of,
                                              question_problems, validate_answers)

pytestmark = pytest.mark.unit

EN = {"en": "?"}


def q(qid: str, kind: str, **settings) -> Question:
    return Question(id=qid, kind=kind, text=EN, **settings)


SURVEY = Survey(id="mixed", version=3, title={"en": "Mixed"}, questions=(
    q("comment", "text", required=False, max_length=10),
    q("nps", "nps"),
    q("csat", "csat", required=False),
    q("ces", "ces", required=False),
    q("stars", "scale", required=False, min=-2, max=2),
    q("reason", "choice", required=False, choices=("price", "service")),
))


def rejected(answers: dict, survey: Survey = SURVEY) -> AnswerError:
    with pytest.raises(AnswerError) as caught:
        validate_answers(survey, answers)
    return caught.value


# ---- surveys and questions -----------------------------------------------------------------------------------

def test_the_primary_question_is_the_first_metric_question():
    assert SURVEY.primary().id == "nps"
    only_text = Survey(id="t", version=1, title=EN, questions=[q("comment", "text")])
    assert only_text.primary() is None
    assert isinstance(only_text.questions, tuple)


def test_bounds_per_kind():
    assert [question.bounds() for question in SURVEY.questions] == [None, (0, 10), (1, 5), (1, 7), (-2, 2), None]


@pytest.mark.parametrize("settings, problem", [
    ({"kind": "stars"}, "kind: unknown kind 'stars'"),
    ({"kind": "scale", "min": 1}, "max: required for kind scale"),
    ({"kind": "scale"}, "min: required for kind scale"),
    ({"kind": "scale", "min": 5, "max": 5}, "max: must be greater than min (5), got 5"),
    ({"kind": "nps", "min": 1, "max": 5}, "min: only for kind scale"),
    ({"kind": "choice"}, "choices: required for kind choice"),
    ({"kind": "text", "choices": ("a",)}, "choices: only for kind choice"),
    ({"kind": "choice", "choices": ("a", "b", "a")}, "choices: listed twice: a"),
    ({"kind": "text", "max_length": 0}, "max_length: must be from 1 to 10000, got 0"),
])
def test_invalid_questions_are_refused(settings, problem):
    with pytest.raises(ValueError, match="question 'x': .*" + problem.replace("(", r"\(").replace(")", r"\)")):
        Question(id="x", text=EN, **settings)
    assert question_problems(settings.pop("kind"), **settings)


def test_a_survey_needs_questions_with_distinct_ids():
    with pytest.raises(ValueError, match="has no questions"):
        Survey(id="s", version=1, title=EN, questions=())
    with pytest.raises(ValueError, match="question ids listed twice: nps"):
        Survey(id="s", version=1, title=EN, questions=(q("nps", "nps"), q("nps", "csat")))


def test_choice_labels_fall_back_to_the_choice_itself():
    question = q("reason", "choice", choices=("price", "other"), choice_text={"price": {"de": "Preis"}})
    assert question.choice_label("price", "de") == "Preis"
    assert question.choice_label("price", "en") == "price"
    assert question.choice_label("other", "de") == "other"


# ---- accepted answers ----------------------------------------------------------------------------------------

def test_answers_are_normalised_in_question_order():
    answers = {"reason": "price", "stars": "-2", "ces": 7, "csat": "1", "nps": "10", "comment": "  Danke!  "}
    assert list(validate_answers(SURVEY, answers).items()) == [
        ("comment", "Danke!"), ("nps", 10), ("csat", 1), ("ces", 7), ("stars", -2), ("reason", "price")]


def test_unanswered_optional_questions_are_left_out():
    assert validate_answers(SURVEY, {"nps": 0, "csat": None, "comment": "   "}) == {"nps": 0}


@pytest.mark.parametrize("kind, low, high", [("nps", 0, 10), ("csat", 1, 5), ("ces", 1, 7)])
def test_every_score_of_a_metric_range_is_accepted_as_number_and_as_form_text(kind, low, high):
    survey = Survey(id="s", version=1, title=EN, questions=(q(kind, kind),))
    for score in range(low, high + 1):
        assert validate_answers(survey, {kind: score}) == {kind: score}
        assert validate_answers(survey, {kind: str(score)}) == {kind: score}


def test_leading_zeros_in_form_text_are_the_same_number():
    assert validate_answers(SURVEY, {"nps": "07"}) == {"nps": 7}


def test_text_up_to_the_limit_is_accepted():
    assert validate_answers(SURVEY, {"nps": 5, "comment": "ä" * 10})["comment"] == "ä" * 10


# ---- rejected answers ----------------------------------------------------------------------------------------

def test_a_missing_required_answer_is_named():
    error = rejected({"csat": 4})
    assert (error.field, error.reason) == ("nps", "required")
    assert str(error) == "nps: required"
    assert isinstance(error, ValueError)
    assert rejected({"nps": None}).reason == "required"


def test_required_text_must_not_be_blank():
    survey = Survey(id="s", version=1, title=EN, questions=(q("why", "text"),))
    assert rejected({"why": " \n "}, survey).reason == "required"


@pytest.mark.parametrize("field, value", [("nps", -1), ("nps", 11), ("csat", 0), ("csat", 6), ("ces", 0),
                                          ("ces", 8), ("stars", -3), ("stars", 3), ("nps", "11"), ("nps", "-1")])
def test_scores_outside_the_kinds_range_are_rejected(field, value):
    error = rejected({"nps": 5, field: value})
    assert error.field == field
    assert error.reason.startswith("out of range: expected a whole number from")


def test_digit_strings_longer_than_any_score_are_not_converted():
    assert rejected({"nps": "1" * 5000}).reason.startswith("expected a whole number from 0 to 10, got '111")


@pytest.mark.parametrize("value", [True, False, 7.0, 7.5, "7.5", "", " 7", "7 ", "+7", "abc", "٧", "½", [7], {}])
def test_numbers_must_be_whole_numbers_or_digit_strings(value):
    error = rejected({"nps": value})
    assert error.field == "nps"
    assert error.reason.startswith("expected a whole number from 0 to 10, got ")


def test_booleans_are_not_scores_even_where_they_equal_one():
    assert rejected({"nps": 5, "csat": True}).reason == "expected a whole number from 1 to 5, got True"


def test_unknown_question_ids_are_rejected_before_anything_else():
    error = rejected({"submit": "Send", "nps": 99})
    assert (error.field, error.reason) == ("submit", "unknown question")
    assert rejected({7: 1, "nps": 5}).field == "7"


def test_text_is_capped_and_must_be_text():
    error = rejected({"nps": 5, "comment": "x" * 11})
    assert (error.field, error.reason) == ("comment", "too long: at most 10 characters, got 11")
    assert rejected({"nps": 5, "comment": 42}).reason == "expected text, got 42"
    assert rejected({"nps": 5, "comment": "a\x00b"}).reason == "contains a NUL character"


def test_a_choice_must_be_one_of_the_choices():
    error = rejected({"nps": 5, "reason": "Price"})
    assert (error.field, error.reason) == ("reason", "expected one of price, service, got 'Price'")
    assert rejected({"nps": 5, "reason": ""}).field == "reason"
    assert rejected({"nps": 5, "reason": ["price"]}).reason == "expected one of price, service, got list"


def test_long_offending_values_are_shortened_in_the_reason():
    reason = rejected({"nps": "z" * 500}).reason
    assert len(reason) < 100 and reason.endswith("...")


# ---- score bands ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, bands", [
    ("nps", ["detractor"] * 7 + ["passive"] * 2 + ["promoter"] * 2),
    ("csat", ["dissatisfied"] * 2 + ["neutral"] + ["satisfied"] * 2),
    ("ces", ["hard"] * 3 + ["neutral"] + ["easy"] * 3),
])
def test_every_score_falls_in_its_band(kind, bands):
    low = 0 if kind == "nps" else 1
    assert [metric_of(kind, score) for score in range(low, low + len(bands))] == bands


@pytest.mark.parametrize("kind, detractors, others", [
    ("nps", range(7), range(7, 11)), ("csat", range(1, 3), range(3, 6)), ("ces", range(1, 4), range(4, 8))])
def test_detractors_per_kind(kind, detractors, others):
    assert all(is_detractor(kind, score) for score in detractors)
    assert not any(is_detractor(kind, score) for score in others)


@pytest.mark.parametrize("kind, value", [("scale", 3), ("text", 1), ("nps", 11), ("csat", 0), ("ces", True),
                                         ("nps", "9")])
def test_bands_exist_only_for_metric_scores_in_range(kind, value):
    with pytest.raises(ValueError):
        metric_of(kind, value)
    with pytest.raises(ValueError):
        is_detractor(kind, value)
