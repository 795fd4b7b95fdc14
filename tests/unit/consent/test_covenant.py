from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consent import CovenantError, parse_covenant
from tests.support import COVENANT


def test_a_valid_covenant() -> None:
    cov = parse_covenant(COVENANT)
    assert cov.id == "test-covenant"
    assert cov.parties == {"org-a", "org-b", "org-c"}
    assert cov.covered_categories == {"youth_care", "housing", "debt"}
    assert cov.categories["mental_health"] == "consent"
    assert cov.valid_from == datetime(2026, 1, 1, tzinfo=UTC)
    # valid_until is inclusive: the covenant ends at the start of the next day
    assert cov.valid_until == datetime(2027, 1, 1, tzinfo=UTC)
    assert cov.in_force(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert not cov.in_force(datetime(2027, 1, 1, tzinfo=UTC))
    assert not cov.in_force(datetime(2025, 12, 31, tzinfo=UTC))


def test_articles_name_what_each_covenant_category_rests_on() -> None:
    assert parse_covenant(COVENANT).article_for("housing") == ""
    cov = parse_covenant(_replace('regions = ["GM0014"]', 'regions = ["GM0014"]\n'
                                  'article = "art. 5"') + '\n[articles]\nhousing = "art. 5.3"\n')
    assert (cov.article_for("youth_care"), cov.article_for("housing")) == ("art. 5", "art. 5.3")


def _replace(old: str, new: str) -> str:
    assert old in COVENANT
    return COVENANT.replace(old, new)


@pytest.mark.parametrize(("source", "message"), [
    (_replace("valid_until = 2026-12-31", "valid_until = 2025-12-31"),
     "line 5: valid_until must be after valid_from"),
    (_replace('mental_health = "consent"', 'mental_health = "maybe"'),
     "line 15: category 'mental_health' must be \"covenant\" or \"consent\""),
    (_replace('mental_health = "consent"', 'mental = "consent"'), "line 15: unknown category"),
    (_replace('parties = ["org-a", "org-b", "org-c"]', 'parties = ["org-a"]'),
     "line 7: a covenant needs at least two parties"),
    (_replace('parties = ["org-a", "org-b", "org-c"]', 'parties = ["org-a", "Org B"]'),
     "line 7: parties: 'Org B'"),
    (_replace('regions = ["GM0014"]', 'regions = ["Groningen"]'), "line 9: regions"),
    (_replace('coordinator = "coord-a"\n', ""), "coordinator is required"),
    (_replace('id = "test-covenant"', 'id = "test-covenant"\nowner = "x"'),
     "line 2: unknown key 'owner'"),
    (_replace('purposes = ["care_coordination"]', 'purposes = []'), "line 8: purposes must"),
    (_replace("valid_from = 2026-01-01", "valid_from = 2026-01-01T00:00:00"),
     "line 4: valid_from needs a UTC offset"),
    (COVENANT + '\n[articles]\nmental_health = "art. 9"\n',
     "line 18: [articles] names 'mental_health', which is not a \"covenant\" category"),
    (COVENANT + '\n[articles]\nhousing = ""\n', "line 18: housing"),
    (_replace('regions = ["GM0014"]', 'regions = ["GM0014"]\narticle = 5'),
     "line 10: article must be a string"),
    ("id = \n", "invalid covenant"),
    ("", "the file is empty"),
])
def test_invalid_covenants_name_the_line_and_reason(source: str, message: str) -> None:
    with pytest.raises(CovenantError) as info:
        parse_covenant(source)
    assert message in str(info.value)


@pytest.mark.parametrize("value", ["9999-12-31", "1000-01-01", "0001-01-01T00:00:00-01:00"])
def test_dates_out_of_range_are_refused_not_crashed(value: str) -> None:
    with pytest.raises(CovenantError, match="between 2000 and 2200"):
        parse_covenant(_replace("valid_until = 2026-12-31", f"valid_until = {value}"))


REGIONAL = _replace('coordinator = "coord-a"\n', "").replace(
    'regions = ["GM0014"]', 'regions = ["GM0014", "GM0034"]') + (
    '\n[coordinators]\nGM0014 = "coord-a"\nGM0034 = "coord-b"\n')
GROUPS = _replace('coordinator = "coord-a"\n', "") + (
    '\n[[groups]]\ncoordinator = "coord-a"\nparties = ["org-a", "org-b"]\n'
    '\n[[groups]]\ncoordinator = "coord-b"\nparties = ["org-c"]\n')


def test_one_coordinator_by_default_reminder_and_escalation_defaults() -> None:
    cov = parse_covenant(COVENANT)
    assert (cov.assignment, cov.coordinators) == ("single", ("coord-a",))
    assert cov.coordinator_for("GM0014", "org-c") == "coord-a"
    assert (cov.reminder_days, cov.escalation_days, cov.escalation_contact) == (5, 10, "")
    assert (cov.match_notices, cov.linkage_profile) == (frozenset(), "")


def test_coordinators_by_region() -> None:
    cov = parse_covenant(REGIONAL)
    assert (cov.assignment, cov.coordinators) == ("region", ("coord-a", "coord-b"))
    assert cov.coordinator_for("GM0034", "org-a") == "coord-b"
    assert cov.regions_of("coord-a") == ("GM0014",)
    assert cov.regions_of("coord-x") == ()


def test_coordinators_by_partner_group() -> None:
    cov = parse_covenant(GROUPS)
    assert (cov.assignment, cov.coordinators) == ("group", ("coord-a", "coord-b"))
    assert [cov.coordinator_for("GM0014", org) for org in ("org-a", "org-b", "org-c")] == [
        "coord-a", "coord-a", "coord-b"]
    assert cov.regions_of("coord-b") == ("GM0014",)


def test_escalation_notices_and_linkage_profile() -> None:
    cov = parse_covenant(_replace('regions = ["GM0014"]',
                                  'regions = ["GM0014"]\nmatch_notices = ["housing", "debt"]\n'
                                  'linkage_profile = "nl-household"')
                         + '\n[escalation]\nreminder_days = 3\nescalation_days = 7\n'
                         'contact = "teamleider"\n')
    assert (cov.reminder_days, cov.escalation_days, cov.escalation_contact) == (
        3, 7, "teamleider")
    assert cov.notices_for("housing") and not cov.notices_for("youth_care")
    assert cov.linkage_profile == "nl-household"


@pytest.mark.parametrize(("source", "message"), [
    (REGIONAL.replace('GM0034 = "coord-b"\n', ""),
     "[coordinators] has no coordinator for region 'GM0034'"),
    (REGIONAL + 'GM0099 = "coord-c"\n',
     "line 19: [coordinators] names region 'GM0099', which is not in regions"),
    (REGIONAL.replace('GM0034 = "coord-b"', 'GM0034 = "Coord B"'), "line 18: GM0034 must be"),
    ('coordinator = "coord-a"\n' + REGIONAL,
     "give exactly one of coordinator, [coordinators] (by region) or [[groups]]"),
    (GROUPS.replace('parties = ["org-c"]', 'parties = ["org-b"]'),
     "party 'org-b' is in two groups"),
    (GROUPS.replace('parties = ["org-c"]', 'parties = ["org-x"]'),
     "names 'org-x', which is not a party"),
    (GROUPS.replace('parties = ["org-c"]', 'parties = ["org-c"]\nregion = "GM0014"'),
     "unknown key 'region' in [[groups]]"),
    (GROUPS.replace('\n[[groups]]\ncoordinator = "coord-b"\nparties = ["org-c"]\n', ""),
     "party 'org-c' is in no group"),
    (COVENANT + "\n[escalation]\nreminder_days = 0\n",
     "line 18: reminder_days must be a whole number of days from 1 to 365"),
    (COVENANT + "\n[escalation]\nreminder_days = 5\nescalation_days = 5\n",
     "line 19: escalation_days must be after reminder_days"),
    (COVENANT + "\n[escalation]\nreminder_days = true\n", "line 18: reminder_days"),
    (COVENANT + "\n[escalation]\nwho = \"x\"\n", "line 18: unknown key 'who' in [escalation]"),
    (COVENANT + '\n[escalation]\ncontact = "Team Lead"\n', "line 18: "),
    (_replace('regions = ["GM0014"]', 'regions = ["GM0014"]\nmatch_notices = ["police"]'),
     "line 10: match_notices: 'police'"),
    (_replace('regions = ["GM0014"]', 'regions = ["GM0014"]\nlinkage_profile = 3'),
     "line 10: linkage_profile must be a string"),
])
def test_invalid_assignments_and_escalations_name_the_line(source: str, message: str) -> None:
    with pytest.raises(CovenantError) as info:
        parse_covenant(source)
    assert message in str(info.value)
