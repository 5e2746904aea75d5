"""A sync types HubSpot's properties as HubSpot declares them, from the definitions its pull read."""

from __future__ import annotations

from connectors import ConnectorsConfig, HubSpotSource, Record, build_source
from connectors.config import HubSpotConfig
from crmhub.wiring import declare_source_types
from field_mapping import FieldMappingConfig, FieldType, Mapper
from tests.connectors.fakes import HUBSPOT_URL, NOW, FakeHubSpot, FakeSleep

BASE_MS = 1_700_000_000_000


def _source(fake: FakeHubSpot) -> HubSpotSource:
    sleep = FakeSleep()
    connectors = ConnectorsConfig(hubspot=HubSpotConfig(enabled=True, base_url=HUBSPOT_URL))
    source = build_source(
        "hubspot", connectors, "pat-1", fake.client(fake.router()), sleep=sleep, clock=sleep.clock
    )
    assert isinstance(source, HubSpotSource)
    return source


def test_a_property_hubspot_declares_as_text_is_a_string_field_though_it_reads_as_a_number() -> None:
    fake = FakeHubSpot()
    zip_code = {"name": "zip", "label": "Zip", "type": "string", "fieldType": "text"}
    listed = fake.properties["contacts"]
    assert isinstance(listed, list)
    listed.append(zip_code)
    fake.put("contacts", "1", BASE_MS, email="ann@example.com", zip="02134", plan="pro")
    source = _source(fake)
    mapper = Mapper(FieldMappingConfig())
    declare_source_types(mapper, [source])
    [batch] = list(source.stream("contacts").pull(None, now=NOW))
    types: dict[str, FieldType] = {}
    for record in batch.records:
        types |= {name: value.type for name, value in mapper.map_record(record).values.items()}
    # Inferred, "02134" would be an integer field that widens to text, and "pro" one of a few.
    assert types["hubspot_zip"] is FieldType.STRING
    assert types["hubspot_plan"] is FieldType.ENUM


def test_declaring_reads_nothing_until_a_record_of_the_stream_is_mapped() -> None:
    fake = FakeHubSpot()
    source = _source(fake)
    mapper = Mapper(FieldMappingConfig())
    declare_source_types(mapper, [source])
    assert fake.requests == []  # the pull reads the definitions; declaring alone costs no request
    # Mapped in a page's write transaction: with no definitions read yet, still no request.
    record = Record("hubspot", "contacts", "1", NOW, {"id": "1", "properties": {"email": "a@example.com"}})
    mapper.map_record(record)
    assert fake.requests == []
