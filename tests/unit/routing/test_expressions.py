import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.routing.domain import expressions
from services.routing.domain.expressions import MAX_DEPTH, MAX_LENGTH, Expression, ExpressionError, compile_expression

pytestmark = pytest.mark.unit

AGENT = {
    "skills": {"billing": 8, "tech": 3},
    "languages": ["de", "en"],
    "teams": ["emea", "vip"],
    "channel": "chat",
    "senior": True,
    "name": "Ada Lovelace",
    "rating": 4.5,
}
TASK = {"channel": "whatsapp", "language": "de", "tags": ["billing", "refund"], "priority": 7, "tier": None}


def holds(source: str, attrs=AGENT, task=TASK) -> bool:
    return compile_expression(source).evaluate(attrs, task)


@pytest.mark.parametrize("source, expected", [
    ("skills.billing >= 7", True),
    ("skills.billing > 8", False),
    ("skills.billing == 8", True),
    ("skills.billing != 8", False),
    ("skills.tech < 3", False),
    ("skills.tech <= 3", True),
    ("rating > 4", True),
    ("rating == 4.5", True),
    ("name == 'Ada Lovelace'", True),
    ('name == "Ada Lovelace"', True),
    ("name < 'B'", True),
    ("senior == true", True),
    ("senior == false", False),
    ("senior", True),
    ("languages HAS 'de'", True),
    ("languages HAS 'fr'", False),
    ("channel IN ['chat', 'sms']", True),
    ("channel IN ['email']", False),
    ("name CONTAINS 'Love'", True),
    ("name CONTAINS 'love'", False),
    ("skills.billing IN [7, 8, 9]", True),
    ("true", True),
    ("false", False),
    ("1 == 1", True),
    ("1 == 2", False),
    ("-1 < 0", True),
])
def test_operators(source, expected):
    assert holds(source) is expected


@pytest.mark.parametrize("source", ["x AND y", "x and y", "x And y", "x aNd NoT z"])
def test_keywords_are_case_insensitive(source):
    assert holds(source, {"x": 1, "y": 1}) is True


def test_names_are_case_sensitive():
    assert holds("Channel == 'chat'") is False


@pytest.mark.parametrize("source, expected", [
    ("true OR false AND false", True),        # AND binds tighter than OR
    ("(true OR false) AND false", False),
    ("NOT false AND false", False),           # NOT binds tighter than AND
    ("NOT (false AND false)", True),
    ("NOT NOT true", True),
    ("false OR false OR true", True),
    ("true AND true AND false", False),
    ("((((true))))", True),
    ("NOT (skills.billing >= 7 AND languages HAS 'fr') OR false", True),
])
def test_precedence_not_and_parentheses(source, expected):
    assert holds(source) is expected


def test_task_names_resolve_in_the_task():
    assert holds("languages HAS task.language")
    assert not holds("languages HAS task.language", task={"language": "fr"})
    assert holds("task.tags HAS 'refund' AND task.priority >= 5")
    assert holds("task.channel == 'whatsapp'") and not holds("channel == 'whatsapp'")


def test_task_names_without_a_task_are_missing():
    assert compile_expression("languages HAS task.language").evaluate(AGENT) is False
    assert compile_expression("NOT task.language").evaluate(AGENT, None) is True


def test_dotted_names_walk_nested_mappings():
    attrs = {"skills": {"billing": 8}, "org": {"region": {"code": "eu"}}}
    assert holds("org.region.code == 'eu'", attrs)
    assert not holds("skills.billing.level == 8", attrs)      # walks into a number: missing
    assert not holds("skills.sales >= 1", attrs)


@pytest.mark.parametrize("source", [
    "missing == 1", "missing != 1", "missing < 1", "missing >= 1", "missing HAS 'a'", "missing IN ['a']",
    "missing CONTAINS 'a'", "'a' IN missing", "languages HAS missing", "task.tier == 'gold'",
    "task.tier != 'gold'", "missing", "missing == missing",
])
def test_comparisons_with_none_are_false(source):
    assert holds(source) is False


def test_not_of_a_missing_name_is_true():
    assert holds("NOT missing")
    assert holds("NOT (missing == 1)")


@pytest.mark.parametrize("source", [
    "skills.billing == '8'",      # strings never equal numbers
    "senior == 1",                # booleans never equal numbers
    "name > 3",                   # ordering needs like types
    "skills HAS 'billing'",       # HAS needs a list on the left
    "channel IN 'chat-room'",     # IN needs a list on the right
    "languages CONTAINS 'de'",    # CONTAINS is for strings
    "skills.billing CONTAINS 8",
])
def test_mismatched_types_are_false_not_errors(source):
    assert holds(source) is False


@pytest.mark.parametrize("value, expected", [
    (None, False), (False, False), (0, False), ("", False), ([], False), ({}, False),
    (True, True), (2, True), ("x", True), (["a"], True), ({"a": 1}, True), (object(), False),
])
def test_bare_names_test_truthiness(value, expected):
    assert holds("flag", {"flag": value}) is expected


def test_strings_may_contain_quotes_and_escapes():
    assert holds(r"name == 'O\'Brien'", {"name": "O'Brien"})
    assert holds("""name == "O'Brien" """, {"name": "O'Brien"})
    assert holds(r"name == 'back\\slash'", {"name": "back\\slash"})
    assert holds("name == 'AND OR ( ] =='", {"name": "AND OR ( ] =="})


def test_names_may_contain_hyphens_and_underscores():
    assert holds("skills.first-line >= 2 AND team_lead", {"skills": {"first-line": 3}, "team_lead": True})


def test_lists_compare_as_values():
    assert holds("teams == ['emea', 'vip']")
    assert holds("x IN []", {"x": 1}) is False
    assert holds("flag IN [true, 1]", {"flag": 1})


def test_evaluate_tolerates_odd_attribute_values():
    odd = {"skills": ["billing"], "languages": "de", "teams": {"a": 1}, "n": float("nan")}
    for source in ["skills.billing >= 1", "languages HAS 'de'", "teams HAS 'a'", "n > 1", "n == n"]:
        assert holds(source, odd) is False
    assert compile_expression("x == 1").evaluate(None, None) is False


@pytest.mark.parametrize("source, position, fragment", [
    ("", 0, "expected a number, string, list, true, false or name"),
    ("skills.billing >=", 17, "found end of expression"),
    ("skills.billing >= AND x", 18, "found 'AND'"),
    ("(a OR b", 7, "expected ')'"),
    ("a b", 2, "expected AND, OR or the end of the expression"),
    ("a = 1", 2, "unexpected character '='"),
    ("name == 'open", 8, "unterminated string"),
    ("x IN ['a', b]", 11, "in the list"),
    ("x IN ['a' 'b']", 10, "expected ',' or ']'"),
    ("x IN [['a']]", 6, "in the list"),
    ("(a) == 1", 4, "found '=='"),
    ("a == 1 OR", 9, "found end of expression"),
    ("NOT", 3, "found end of expression"),
    ("a == b == c", 7, "found '=='"),
    ("skills. >= 1", 6, "unexpected character '.'"),
    ("a $ b", 2, "unexpected character '$'"),
])
def test_errors_name_the_position_and_what_was_expected(source, position, fragment):
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    error = caught.value
    assert error.position == position
    assert fragment in str(error)
    assert f"at position {position}" in str(error)
    assert isinstance(error, ValueError)


def test_length_is_limited():
    longest = "x == '" + "a" * (MAX_LENGTH - 7) + "'"
    assert len(longest) == MAX_LENGTH
    assert compile_expression(longest).source == longest
    with pytest.raises(ExpressionError, match=f"longer than {MAX_LENGTH}"):
        compile_expression(longest + " ")


def test_nesting_depth_is_limited():
    assert holds("(" * MAX_DEPTH + "true" + ")" * MAX_DEPTH)
    assert holds("NOT " * MAX_DEPTH + "false") is (MAX_DEPTH % 2 == 1)
    with pytest.raises(ExpressionError, match="nesting deeper than"):
        compile_expression("(" * (MAX_DEPTH + 1) + "true" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ExpressionError, match="nesting deeper than"):
        compile_expression("NOT " * 100 + "true")
    with pytest.raises(ExpressionError, match="nesting deeper than"):
        compile_expression("(NOT " * 20 + "x" + ")" * 20)


def test_long_flat_chains_are_fine():
    source = " OR ".join(f"x == {i}" for i in range(150))
    assert len(source) <= MAX_LENGTH
    assert holds(source, {"x": 149}) and not holds(source, {"x": 150})


def test_non_string_sources_are_expression_errors():
    with pytest.raises(ExpressionError, match="expected an expression string"):
        compile_expression(42)  # type: ignore[arg-type]


def test_code_is_never_run(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec must not be used")

    monkeypatch.setattr("builtins.eval", forbidden)
    monkeypatch.setattr("builtins.exec", forbidden)
    assert holds("__import__ == 'os'", {"__import__": "os"})
    with pytest.raises(ExpressionError):
        compile_expression("__import__('os').system('true')")
    assert not hasattr(expressions, "eval")


def test_expressions_are_values():
    assert compile_expression("a == 1") == compile_expression("a == 1")
    assert compile_expression("a == 1") != compile_expression("a ==  1")
    assert len({compile_expression("a"), compile_expression("a")}) == 1
    assert compile_expression("a == 1").source == "a == 1"
    assert "a == 1" in repr(compile_expression("a == 1"))


ALPHABET = st.sampled_from(list("abcxyz_.-0123456789 '\"()[],=!<>\\\t$") + [
    "AND ", "OR ", "NOT ", " HAS ", " IN ", " CONTAINS ", "true", "false", "task.", "skills.", "==", ">=",
])
ATTRS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abcxyz"), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(source=st.one_of(st.text(max_size=80), st.lists(ALPHABET, max_size=40).map("".join)),
       attrs=st.dictionaries(st.sampled_from(["a", "b", "c", "x", "y", "z", "skills"]), ATTRS, max_size=4),
       task=st.dictionaries(st.sampled_from(["a", "x", "language"]), ATTRS, max_size=3))
def test_fuzz_random_sources_compile_or_raise_expression_error(source, attrs, task):
    try:
        compiled = compile_expression(source)
    except ExpressionError as error:
        assert 0 <= error.position <= len(source)
        return
    assert isinstance(compiled, Expression)
    assert compiled.evaluate(attrs, task) in (True, False)
