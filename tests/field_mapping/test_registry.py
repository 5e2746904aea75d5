"""The field registry: types only widen, values are never dropped, and plans say what would change."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from field_mapping import FieldDefinition, FieldMappingConfig, FieldType, Mapper, Origin, plan_fields
from field_mapping.registry import FieldRegistry
from tests.field_mapping.conftest import hubspot_contact, record, stripe_object

T = FieldType
AUTO = Origin("auto", "stripe", "customers", "metadata.seats")


def _metadata(mapper: Mapper, value: Any) -> Any:
    return mapper.map_record(record("stripe", "customers", {"id": "cus_1", "metadata": {"seats": value}}))


def test_integer_widens_to_decimal_then_string_with_warnings() -> None:
    mapper = Mapper(FieldMappingConfig())
    assert _metadata(mapper, "12").values["stripe_customer_metadata_seats"].type is T.INTEGER
    mapped = _metadata(mapper, "12.5")
    value = mapped.values["stripe_customer_metadata_seats"]
    assert (value.type, value.value) == (T.DECIMAL, Decimal("12.5"))
    [warning] = mapped.widenings
    assert (warning.old, warning.new, warning.raw) == (T.INTEGER, T.DECIMAL, "'12.5'")
    assert "widened from integer to decimal" in str(warning)
    mapped = _metadata(mapper, "lots")
    assert (mapped.values["stripe_customer_metadata_seats"].type, mapped.widenings[0].new) == (
        T.STRING,
        T.STRING,
    )
    # never narrows back
    value = _metadata(mapper, "3").values["stripe_customer_metadata_seats"]
    assert (value.type, value.value) == (T.STRING, "3")
    assert _metadata(mapper, "4").widenings == ()


def test_enum_widens_to_string_past_its_distinct_limit() -> None:
    mapper = Mapper(FieldMappingConfig.model_validate({"auto": {"stripe": {"enum_max_distinct": 3}}}))
    for tier in ("a", "b", "c", "a"):
        assert not _metadata(mapper, tier).widenings
    [warning] = _metadata(mapper, "d").widenings
    assert (warning.old, warning.new) == (T.ENUM, T.STRING)
    assert mapper.plan().create[0].type is T.STRING


def test_rule_value_that_does_not_fit_is_left_out_of_the_field_with_a_problem() -> None:
    rule = {
        "source": "stripe",
        "stream": "customers",
        "path": "metadata.seats",
        "field": "seats",
        "type": "integer",
    }
    mapper = Mapper(FieldMappingConfig.model_validate({"rules": [rule]}))
    mapped = _metadata(mapper, "a dozen")
    value = mapped.values["seats"]
    # The field's column holds integers only: no text in it, and no value rather than a stale one.
    assert (value.type, value.value) == (T.INTEGER, None)
    [problem] = mapped.problems
    assert (problem.field, problem.raw, problem.origin.rule) == ("seats", "'a dozen'", 0)
    assert "left out of the field" in problem.reason
    assert not mapped.widenings
    assert {d.name: d.type for d in mapper.definitions()}["seats"] is T.INTEGER  # the rule decides the type


def test_transform_failure_is_left_out_of_the_field() -> None:
    rule = {
        "source": "stripe",
        "stream": "customers",
        "path": "metadata.seats",
        "field": "seats",
        "type": "decimal",
        "transforms": ["cents_to_amount"],
    }
    mapped = _metadata(Mapper(FieldMappingConfig.model_validate({"rules": [rule]})), "n/a")
    assert (mapped.values["seats"].type, mapped.values["seats"].value) == (T.DECIMAL, None)
    assert "cents_to_amount" in mapped.problems[0].reason
    assert "left out of the field" in mapped.problems[0].reason


def test_invalid_phone_and_email_kept_flagged_without_widening() -> None:
    mapper = Mapper(FieldMappingConfig())
    mapper.map_record(record("hubspot", "contacts", hubspot_contact()))
    mapped = mapper.map_record(
        record("hubspot", "contacts", hubspot_contact(email="jane@@x", phone="+1415555"))
    )
    assert (mapped.values["hubspot_email"].type, mapped.values["hubspot_email"].value) == (T.EMAIL, "jane@@x")
    assert (mapped.values["hubspot_phone"].type, mapped.values["hubspot_phone"].value) == (
        T.PHONE,
        "+1415555",
    )
    assert {p.field for p in mapped.problems} == {"hubspot_email", "hubspot_phone"}
    assert not mapped.widenings


def test_e164_rule_keeps_invalid_numbers() -> None:
    rule = {
        "source": "stripe",
        "stream": "customers",
        "path": "phone",
        "field": "mobile",
        "type": "phone",
        "transforms": ["e164"],
    }
    mapper = Mapper(FieldMappingConfig.model_validate({"rules": [rule]}))
    good = mapper.map_record(record("stripe", "customers", {"id": "c", "phone": "415 555 2671"}))
    bad = mapper.map_record(record("stripe", "customers", {"id": "c", "phone": "555"}))
    assert good.values["mobile"].value == "+14155552671" and not good.problems
    assert bad.values["mobile"].value == "555" and len(bad.problems) == 1


def test_second_sync_creates_nothing() -> None:
    first = Mapper(FieldMappingConfig())
    for kind, stream in (
        ("customer", "customers"),
        ("subscription", "subscriptions"),
        ("invoice", "invoices"),
    ):
        first.map_record(record("stripe", stream, stripe_object(kind)))
    first.map_record(record("hubspot", "contacts", hubspot_contact()))
    stored = first.definitions()
    assert len(first.plan().create) == len(stored)
    second = Mapper(FieldMappingConfig(), known=stored)
    for kind, stream in (
        ("customer", "customers"),
        ("subscription", "subscriptions"),
        ("invoice", "invoices"),
    ):
        assert second.map_record(record("stripe", stream, stripe_object(kind))).created == ()
    assert second.map_record(record("hubspot", "contacts", hubspot_contact())).created == ()
    assert second.plan().empty
    assert [d.name for d in second.definitions()] == [d.name for d in stored]


def test_plan_reports_widening_new_options_and_retyping() -> None:
    known = [
        FieldDefinition("seats", T.INTEGER, "Seats", AUTO),
        FieldDefinition("tier", T.ENUM, "Tier", AUTO, options=("gold",)),
        FieldDefinition("plan", T.STRING, "Plan", AUTO),
    ]
    current = [
        FieldDefinition("seats", T.DECIMAL, "Seats", AUTO),
        FieldDefinition("tier", T.ENUM, "Tier", AUTO, options=("gold", "silver")),
        FieldDefinition("plan", T.ENUM, "Plan", AUTO),
        FieldDefinition("new_one", T.BOOLEAN, "New one", AUTO),
    ]
    plan = plan_fields(known, current)
    assert [d.name for d in plan.create] == ["new_one"]
    assert [(c.name, c.old, c.new) for c in plan.widen] == [("seats", T.INTEGER, T.DECIMAL)]
    assert [(c.name, c.old, c.new) for c in plan.retype] == [("plan", T.STRING, T.ENUM)]
    assert plan.new_options == {"tier": ("silver",)}
    assert not plan.empty


def test_known_enum_options_count_toward_the_limit() -> None:
    registry = FieldRegistry([FieldDefinition("tier", T.ENUM, "Tier", AUTO, options=("a", "b"))])
    state = registry.get("tier")
    assert state is not None
    state.enum_max = 2
    problems: list[Any] = []
    widenings: list[Any] = []
    assert registry.accept(state, "a", AUTO, problems, widenings).type is T.ENUM
    assert registry.accept(state, "c", AUTO, problems, widenings).type is T.STRING
    assert len(widenings) == 1


_VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        ["2024-01-02", "2024-01-02T03:04:05Z", "a@example.com", "+14155552671", "12", "1.5", "true"]
    ),
    st.none(),
)
_ORDER = {T.STRING: 2, T.DECIMAL: 1, T.DATETIME: 1}  # integer -> decimal, date -> datetime


@given(st.lists(_VALUES, min_size=1, max_size=25))
@example(["2024-01-02T03:04:05Z", 0])  # a date-time field, then epoch 0: "never", no value
def test_widening_never_narrows_and_never_drops(values: list[Any]) -> None:
    mapper = Mapper(FieldMappingConfig())
    seen: list[FieldType] = []
    for raw in values:
        mapped = _metadata(mapper, raw)
        value = mapped.values.get("stripe_customer_metadata_seats")
        if value is None:
            assert raw in (None, "") and not seen  # only a null or "" before any value gives no field
            continue
        # A value is never dropped; "" is none for a typed field, and epoch 0 ("never") for a date-time one.
        never = value.type is T.DATETIME and raw in (0, "0") and not isinstance(raw, bool)
        if raw is not None and (raw != "" or value.type is T.STRING) and not never:
            assert value.value is not None
        current = value.type
        if seen and seen[-1] is not current:
            assert _ORDER.get(current, 0) > _ORDER.get(seen[-1], 0)  # a change only ever widens
            assert mapped.widenings
        seen.append(current)
