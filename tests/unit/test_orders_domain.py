from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.orders import domain
from services.orders.domain import RecentOrder, Status
from services.orders.views import newest_orders
from shared.contracts.orders import Address, Category, HouseholdFlag

T0 = datetime(2022, 5, 1, 8, 0, tzinfo=UTC)


def test_medicine_for_an_elderly_person_alone_ranks_above_vegetables() -> None:
    assert domain.priority(Category.medicine, [HouseholdFlag.elderly_alone]) > domain.priority(
        Category.groceries, []
    )
    assert domain.priority(Category.transfer, [HouseholdFlag.close_contact]) >= 80


@given(st.sampled_from(list(Category)), st.lists(st.sampled_from(list(HouseholdFlag))))
def test_priority_stays_in_range_and_flags_never_lower_it(
    category: Category, flags: list[HouseholdFlag]
) -> None:
    p = domain.priority(category, flags)
    assert 0 <= p <= 100
    assert p >= domain.priority(category, [])


def test_residents_cancel_until_pickup_staff_until_the_end() -> None:
    assert domain.cancel_refusal(Status.assigned, "resident") is None
    assert domain.cancel_refusal(Status.picked_up, "resident") is not None
    assert domain.cancel_refusal(Status.picked_up, "staff") is None
    assert domain.cancel_refusal(Status.delivered, "staff") is not None
    # A failed order is with nobody: the resident who no longer wants it may cancel it.
    assert domain.cancel_refusal(Status.failed, "resident") is None


def test_the_same_open_request_within_the_window_is_a_likely_duplicate() -> None:
    recent = [RecentOrder("o1", Category.groceries, Status.accepted, T0)]
    window = timedelta(minutes=30)
    assert (
        domain.likely_duplicate(recent, Category.groceries, T0 + timedelta(minutes=10), window)
        == "o1"
    )
    assert (
        domain.likely_duplicate(recent, Category.medicine, T0 + timedelta(minutes=10), window)
        is None
    )
    assert (
        domain.likely_duplicate(recent, Category.groceries, T0 + timedelta(minutes=31), window)
        is None
    )
    delivered = [RecentOrder("o1", Category.groceries, Status.delivered, T0)]
    assert (
        domain.likely_duplicate(delivered, Category.groceries, T0 + timedelta(minutes=1), window)
        is None
    )


def test_card_codes_are_short_unambiguous_and_a_mistyped_one_does_not_fit() -> None:
    # Random draws may repeat (500 of 23^5 do about one run in fifty); the community's
    # book draws again until a code is its own (test_orders_rules).
    codes = {domain.new_card_code() for _ in range(500)}
    assert len(codes) > 450
    assert all(len(c) == 6 and not set(c) & set("0O1IL2Z5S8B6G") for c in codes)
    assert domain.normalise_card_code(" ac3-d4 7x ") == "AC3D47X"
    for code in list(codes)[:50]:
        assert domain.card_code_fits(code)
        for i, right in enumerate(code):  # every single misheard character
            for wrong in domain.CARD_ALPHABET.replace(right, ""):
                assert not domain.card_code_fits(code[:i] + wrong + code[i + 1 :])
        for i in range(len(code) - 1):  # every two neighbours swapped
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
            assert swapped == code or not domain.card_code_fits(swapped)


def test_csv_rows_are_imported_or_rejected_by_line_with_a_reason() -> None:
    text = (
        "compound,building,unit,room,grid,phone,flags\n"
        "Datong Garden,3,2,401,g3,139 1234 5678,elderly_alone;no_smartphone\n"  # line 2: good
        "Datong Garden,3,2,402,g9,13912345679,\n"  # 3: unknown grid
        "Datong Garden,3,2,403,g3,12ab,\n"  # 4: bad phone
        "Datong Garden,3,2,404,g3,13912345670,wizard\n"  # 5: unknown flag
        ",3,2,405,g3,13912345671,\n"  # 6: missing compound
        "Datong Garden,3,2,401,g3,13912345672,\n"  # 7: same address as line 2
        "Datong Garden,3,2,406,g3,13912345673,,extra\n"  # 8: too many fields
        f"Datong Garden,3,2,{'x' * 101},g3,13912345674,\n"  # 9: oversized
    )
    parsed = domain.parse_households_csv(text, {"g1", "g3"})
    assert [r.line for r in parsed.rows] == [2]
    assert parsed.rows[0].phone == "13912345678"
    assert parsed.rows[0].flags == [HouseholdFlag.elderly_alone, HouseholdFlag.no_smartphone]
    assert [r["line"] for r in parsed.rejected] == [3, 4, 5, 6, 7, 8, 9]
    reasons = {r["line"]: r["reason"] for r in parsed.rejected}
    assert "grid" in reasons[3] and "phone" in reasons[4] and "flags" in reasons[5]
    assert "compound" in reasons[6] and "line 2" in reasons[7] and "room" in reasons[9]


def test_a_csv_without_the_needed_columns_is_refused_whole() -> None:
    try:
        domain.parse_households_csv("name,phone\nx,1\n", {"g1"})
    except domain.CsvHeaderError as exc:
        assert "compound" in str(exc)
    else:
        raise AssertionError("expected a header error")


def test_a_household_without_any_phone_is_imported_with_none() -> None:
    text = "compound,building,unit,room,grid,phone,flags\nDatong Garden,3,2,401,g3,,no_smartphone\n"
    parsed = domain.parse_households_csv(text, {"g3"})
    assert parsed.rejected == []
    assert parsed.rows[0].phone is None


def test_a_csv_field_beyond_the_parsers_limit_is_refused_as_bad_csv() -> None:
    text = f'compound,building,unit,room,grid,phone,flags\n"{"x" * 200_000}",3,2,401,g3,,\n'
    try:
        domain.parse_households_csv(text, {"g3"})
    except domain.CsvHeaderError as exc:
        assert "after line 1: field larger than field limit" in str(exc)
    else:
        raise AssertionError("expected the CSV to be refused")


def test_staffs_list_from_the_live_documents_is_newest_first_filtered_and_limited() -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    docs = [
        {
            "_id": f"o{i}",
            "status": ("placed", "delivered")[i % 2],
            "placed_at": t0 + timedelta(minutes=i),
        }
        for i in range(10)
    ]
    newest = docs[::-1]
    assert [d["_id"] for d in newest_orders(newest, {"status": "placed"}, 3)] == ["o8", "o6", "o4"]
    assert [d["_id"] for d in newest_orders(newest, {}, 2)] == ["o9", "o8"]
    assert newest_orders(newest, {"status": "cancelled"}, 5) == []


def test_one_flat_however_it_is_written_and_one_phone_however_it_is_dialled() -> None:
    written = [
        Address(compound="民主路 小区", building="８", unit="2", room="301"),
        Address(compound="民主路小区", building="8", unit="2", room="３０１"),
        Address(compound="Datong  Garden", building="8", unit="2", room="301"),
        Address(compound="datong garden", building="8", unit="2", room="301"),
    ]
    keys = [domain.address_key(a) for a in written]
    assert keys[0] == keys[1] and keys[2] == keys[3] and keys[0] != keys[2]
    csv_text = (
        "compound,building,unit,room,grid,phone,flags\n"
        "Datong Garden,8,2,301,g1,+86 139 1234 5678,\n"
        "DATONG GARDEN,8,2,301,g1,13912345678,\n"
        "Datong Garden,8,2,302,g1,0086１３９１２３４５６７９,\n"
    )
    parsed = domain.parse_households_csv(csv_text, {"g1"})
    assert parsed.rejected == [{"line": 3, "reason": "same address as line 2"}]
    assert [r.phone for r in parsed.rows] == ["13912345678", "13912345679"]
