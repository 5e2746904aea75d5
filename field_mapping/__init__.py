"""Field mapping: mapping rules, type inference, field naming, custom-field creation (also in HubSpot)."""

from field_mapping.config import (
    AutoConfig,
    AutoSourceConfig,
    FieldMappingConfig,
    HubSpotPushConfig,
    IdentityConfig,
    MappingRule,
    MapTransform,
    TypeformAutoConfig,
)
from field_mapping.hubspot_properties import (
    PROPERTY_TYPES,
    group_create,
    is_hubspot_name,
    property_create,
    property_value,
    pushable,
)
from field_mapping.identity import extract_identities, identity_hints
from field_mapping.inference import (
    hubspot_declared_type,
    hubspot_declared_types,
    infer,
    typeform_declared_type,
)
from field_mapping.mapper import Mapper
from field_mapping.model import (
    IDENTITY_KINDS,
    FieldDefinition,
    FieldValue,
    IdentityHint,
    MappedRecord,
    Origin,
    Problem,
    Widening,
)
from field_mapping.naming import is_field_name
from field_mapping.normalize import normalize_email, normalize_phone
from field_mapping.registry import FieldChange, FieldPlan, FieldRegistry, plan_fields
from field_mapping.sources import AUTO_STREAMS, KNOWN_STREAMS, SKIPPED_PATHS
from field_mapping.types import STORAGE, Column, Columns, FieldType, from_columns, to_columns, widen

__all__ = [
    "AUTO_STREAMS",
    "IDENTITY_KINDS",
    "KNOWN_STREAMS",
    "PROPERTY_TYPES",
    "SKIPPED_PATHS",
    "STORAGE",
    "AutoConfig",
    "AutoSourceConfig",
    "Column",
    "Columns",
    "FieldChange",
    "FieldDefinition",
    "FieldMappingConfig",
    "FieldPlan",
    "FieldRegistry",
    "FieldType",
    "FieldValue",
    "HubSpotPushConfig",
    "IdentityConfig",
    "IdentityHint",
    "MapTransform",
    "MappedRecord",
    "Mapper",
    "MappingRule",
    "Origin",
    "Problem",
    "TypeformAutoConfig",
    "Widening",
    "extract_identities",
    "from_columns",
    "group_create",
    "hubspot_declared_type",
    "hubspot_declared_types",
    "identity_hints",
    "infer",
    "is_field_name",
    "is_hubspot_name",
    "normalize_email",
    "normalize_phone",
    "plan_fields",
    "property_create",
    "property_value",
    "pushable",
    "to_columns",
    "typeform_declared_type",
    "widen",
]
