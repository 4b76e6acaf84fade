from datetime import datetime, timedelta, timezone

import pytest

from services.routing.domain.expressions import compile_expression
from services.routing.domain.workflow import AgentView, Filter, Target, Workflow, choose_agent

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
BILLING_DE = {"channel": "chat", "language": "de", "tags": ["billing"], "priority": 3}
OTHER = {"channel": "email", "language": "en", "tags": [], "priority": 0}


def target(queue: str, expression: str = "true", timeout_s: float | None = None, skip_if: str | None = None,
           priority: int = 0) -> Target:
    return Target(queue=queue, expression=compile_expression(expression), priority=priority, timeout_s=timeout_s,
                  skip_if=skip_if)


def agent(agent_id: str, presence: str = "online", used: int = 0, total: int = 100,
          last: datetime | None = None, **attributes) -> AgentView:
    return AgentView(agent_id=agent_id, presence=presence, attributes=attributes, capacity_total=total, used=used,
                     last_assigned_at=last)


EXPERT = target("billing", "skills.billing >= 7 AND languages HAS task.language", timeout_s=60)
SPEAKER = target("billing", "skills.billing >= 1 AND languages HAS task.language", timeout_s=120)
ANY_BILLING = target("billing", "skills.billing >= 1", skip_if="no_available_agents")
GENERAL = target("general")
WORKFLOW = Workflow(
    filters=(
        Filter("vip", compile_expression("tier == 'gold'"), (target("vip", "teams HAS 'vip'"),)),
        Filter("billing-german", compile_expression("tags HAS 'billing' AND language == 'de'"),
               (EXPERT, SPEAKER, ANY_BILLING, GENERAL)),
        Filter("billing", compile_expression("tags HAS 'billing'"), (target("billing-intl"),)),
    ),
    default_targets=(target("general", "languages HAS task.language", timeout_s=90), GENERAL),
)


# ---- stages, current, next_change_s ------------------------------------------------------------------------

def test_first_matching_filter_wins():
    assert WORKFLOW.stages(BILLING_DE) == [EXPERT, SPEAKER, ANY_BILLING, GENERAL]
    assert WORKFLOW.stages({**BILLING_DE, "tier": "gold"})[0].queue == "vip"
    assert WORKFLOW.stages({**BILLING_DE, "language": "fr"})[0].queue == "billing-intl"


def test_default_targets_when_no_filter_matches():
    assert WORKFLOW.stages(OTHER) == list(WORKFLOW.default_targets)
    assert WORKFLOW.stages({}) == list(WORKFLOW.default_targets)


def test_filter_match_names_resolve_in_the_task_with_or_without_prefix():
    workflow = Workflow(filters=(Filter("f", compile_expression("task.channel == 'sms' AND priority > 1"),
                                        (target("sms"),)),))
    assert workflow.stages({"channel": "sms", "priority": 2})[0].queue == "sms"
    assert workflow.stages({"channel": "sms", "priority": 1})[0].queue == "general"


def test_an_empty_workflow_routes_everything_to_general():
    assert Workflow().stages(OTHER) == [Target(queue="general")]
    assert Workflow().current(OTHER, 10_000) == [Target(queue="general")]
    assert Workflow().next_change_s(OTHER, 0) is None


@pytest.mark.parametrize("waited_s, first", [
    (0, EXPERT), (59.9, EXPERT), (60, SPEAKER), (179.9, SPEAKER), (180, ANY_BILLING), (10 ** 9, ANY_BILLING),
    (-5, EXPERT),
])
def test_targets_relax_by_cumulative_timeouts(waited_s, first):
    current = WORKFLOW.current(BILLING_DE, waited_s)
    assert current[0] == first
    stages = WORKFLOW.stages(BILLING_DE)
    assert current == stages[stages.index(first):]


@pytest.mark.parametrize("waited_s, expected", [(0, 60), (45, 15), (60, 120), (100, 80), (180, None), (500, None)])
def test_next_change_counts_down_to_the_next_target(waited_s, expected):
    assert WORKFLOW.next_change_s(BILLING_DE, waited_s) == expected


def test_the_last_target_stays_in_force_after_every_timeout():
    workflow = Workflow(default_targets=(target("a", timeout_s=10), target("b", timeout_s=20)))
    assert workflow.current(OTHER, 5)[0].queue == "a"
    assert workflow.next_change_s(OTHER, 5) == 5
    assert [t.queue for t in workflow.current(OTHER, 1000)] == ["b"]
    assert workflow.next_change_s(OTHER, 15) is None


def test_a_target_without_timeout_holds_for_good():
    workflow = Workflow(default_targets=(target("a"), target("b", timeout_s=5)))
    assert [t.queue for t in workflow.current(OTHER, 10 ** 9)] == ["a", "b"]
    assert workflow.next_change_s(OTHER, 10 ** 9) is None


# ---- choose_agent ------------------------------------------------------------------------------------------

def test_the_first_target_with_an_eligible_agent_selects():
    agents = [agent("junior", skills={"billing": 2}, languages=["de"]),
              agent("expert", skills={"billing": 9}, languages=["de"])]
    chosen, selected = choose_agent(WORKFLOW.current(BILLING_DE, 0), BILLING_DE, agents, 20, "most_available",
                                    set())
    assert (chosen.agent_id, selected) == ("expert", EXPERT)


def test_a_target_with_a_timeout_and_no_skip_if_makes_the_conversation_wait():
    agents = [agent("junior", skills={"billing": 2}, languages=["de"])]
    assert choose_agent(WORKFLOW.current(BILLING_DE, 30), BILLING_DE, agents, 20, "most_available", set()) is None
    chosen, selected = choose_agent(WORKFLOW.current(BILLING_DE, 60), BILLING_DE, agents, 20, "most_available",
                                    set())
    assert (chosen.agent_id, selected) == ("junior", SPEAKER)


def test_skip_if_no_available_agents_moves_on_at_once():
    agents = [agent("generalist", skills={}, languages=["en"])]
    targets = WORKFLOW.current(BILLING_DE, 180)
    assert targets[0] == ANY_BILLING
    chosen, selected = choose_agent(targets, BILLING_DE, agents, 20, "most_available", set())
    assert (chosen.agent_id, selected) == ("generalist", GENERAL)


def test_skip_if_does_not_skip_when_someone_is_eligible():
    agents = [agent("generalist"), agent("biller", used=90, skills={"billing": 1})]
    chosen, selected = choose_agent([ANY_BILLING, GENERAL], BILLING_DE, agents, 10, "most_available", set())
    assert (chosen.agent_id, selected) == ("biller", ANY_BILLING)


def test_nobody_eligible_anywhere_is_none():
    assert choose_agent([ANY_BILLING], BILLING_DE, [agent("a")], 20, "most_available", set()) is None
    assert choose_agent([], BILLING_DE, [agent("a")], 20, "most_available", set()) is None
    assert choose_agent([GENERAL], BILLING_DE, [], 20, "least_active", set()) is None


@pytest.mark.parametrize("model", ["most_available", "least_active", "round_robin"])
def test_offline_and_away_agents_are_never_chosen(model):
    agents = [agent("off", presence="offline"), agent("away", presence="away")]
    assert choose_agent([GENERAL], OTHER, agents, 10, model, set()) is None
    agents.append(agent("on", used=80))
    assert choose_agent([GENERAL], OTHER, agents, 10, model, set())[0].agent_id == "on"


@pytest.mark.parametrize("model", ["most_available", "least_active", "round_robin"])
def test_capacity_cost_is_respected(model):
    agents = [agent("busy", used=90), agent("small", total=50, used=0)]
    assert choose_agent([GENERAL], OTHER, agents, 100, model, set()) is None
    assert choose_agent([GENERAL], OTHER, agents, 50, model, set())[0].agent_id == "small"
    assert choose_agent([GENERAL], OTHER, [agent("busy", used=90)], 10, model, set())[0].agent_id == "busy"


@pytest.mark.parametrize("model", ["most_available", "least_active", "round_robin"])
def test_excluded_agents_are_skipped(model):
    agents = [agent("a"), agent("b")]
    assert choose_agent([GENERAL], OTHER, agents, 10, model, {"a"})[0].agent_id == "b"
    assert choose_agent([GENERAL], OTHER, agents, 10, model, {"a", "b"}) is None


def test_an_excluded_agent_counts_as_unavailable_for_skip_if():
    agents = [agent("biller", skills={"billing": 5}), agent("generalist")]
    chosen, selected = choose_agent([ANY_BILLING, GENERAL], BILLING_DE, agents, 10, "most_available", {"biller"})
    assert (chosen.agent_id, selected) == ("generalist", GENERAL)


def test_most_available_prefers_free_capacity_then_longest_idle():
    earlier, later = NOW - timedelta(hours=1), NOW - timedelta(minutes=1)
    agents = [agent("a", used=40, last=earlier), agent("b", used=20, last=later), agent("c", used=20, last=earlier)]
    assert choose_agent([GENERAL], OTHER, agents, 10, "most_available", set())[0].agent_id == "c"
    agents.append(agent("d", used=20, last=None))
    assert choose_agent([GENERAL], OTHER, agents, 10, "most_available", set())[0].agent_id == "d"
    bigger = agent("e", total=200, used=100)  # 100 free beats 80 free
    assert choose_agent([GENERAL], OTHER, agents + [bigger], 10, "most_available", set())[0].agent_id == "e"


def test_least_active_prefers_least_used_then_longest_idle():
    earlier, later = NOW - timedelta(hours=1), NOW - timedelta(minutes=1)
    agents = [agent("big", total=300, used=40), agent("b", used=20, last=later), agent("c", used=20, last=earlier)]
    assert choose_agent([GENERAL], OTHER, agents, 10, "least_active", set())[0].agent_id == "c"
    assert choose_agent([GENERAL], OTHER, agents, 10, "most_available", set())[0].agent_id == "big"


def test_ties_break_on_agent_id():
    agents = [agent("z"), agent("m"), agent("b")]
    for model in ("most_available", "least_active"):
        assert choose_agent([GENERAL], OTHER, agents, 10, model, set())[0].agent_id == "b"


def test_round_robin_cycles_by_agent_id_from_the_cursor():
    agents = [agent("c"), agent("a"), agent("b", presence="away"), agent("d")]
    chosen = [choose_agent([GENERAL], OTHER, agents, 10, "round_robin", set(), cursor)[0].agent_id
              for cursor in range(7)]
    assert chosen == ["a", "c", "d", "a", "c", "d", "a"]


def test_round_robin_ignores_skill_expressions_and_returns_the_first_target():
    agents = [agent("a", skills={}), agent("b", skills={})]
    picked, selected = choose_agent([EXPERT, GENERAL], BILLING_DE, agents, 10, "round_robin", set(), 1)
    assert (picked.agent_id, selected) == ("b", EXPERT)


def test_unknown_routing_model_is_an_error():
    with pytest.raises(ValueError, match="unknown routing model 'fastest'"):
        choose_agent([GENERAL], OTHER, [agent("a")], 10, "fastest", set())


def test_agent_views_need_aware_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        agent("a", last=datetime(2026, 1, 1))
    assert agent("a", used=30, total=100).free == 70
