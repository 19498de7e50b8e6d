"""The provider's OpenLineage facets: this provider (its repository at its version) as their ``_producer``, and
their own JSON schema, shipped in the package, as their ``_schemaURL``."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest
from airflow.providers.common.compat.openlineage.facet import RunFacet
from openlineage.client.serde import Serde

import airflow_provider_ltx2
from airflow_provider_ltx2 import __version__, lineage
from tests.fakes import FINISHED_REQUEST, FINISHED_RESULT

REPOSITORY = "https://github.com/airflow-provider-ltx2/airflow-provider-ltx2"
RAW = "https://raw.githubusercontent.com/airflow-provider-ltx2/airflow-provider-ltx2"
RUN_FACET_URL = RunFacet._get_schema()  # OpenLineage's RunFacet, in the spec version of the installed client
# OpenLineage's BaseFacet and RunFacet as its spec (OpenLineage.json, 2-0-2) defines them: the schemas' one
# remote reference, answered here so that nothing is fetched.
OPENLINEAGE_BASE_FACETS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": RUN_FACET_URL.partition("#")[0],
    "$defs": {
        "BaseFacet": {
            "type": "object",
            "properties": {
                "_producer": {"type": "string", "format": "uri"},
                "_schemaURL": {"type": "string", "format": "uri"},
            },
            "additionalProperties": True,
            "required": ["_producer", "_schemaURL"],
        },
        "RunFacet": {
            "type": "object",
            "allOf": [{"$ref": "#/$defs/BaseFacet"}, {"type": "object", "additionalProperties": True}],
        },
    },
}
REQUEST, RESULT = FINISHED_REQUEST, FINISHED_RESULT
BATCH = {
    "total": 3,
    "generated": 1,
    "reused": 1,
    "failed": 1,
    "planned": 0,
    "cost_usd": 0.6,
    "estimated_cost_usd": 1.2,
    "manifest_uri": "s3://videos/batch/manifest.jsonl",
}
# The JSON type of each Python type a facet's field may have (`X | None` is X: OpenLineage's serde drops nulls).
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}
FACET_CLASSES = [lineage.Ltx2GenerationRunFacet, lineage.Ltx2BatchRunFacet]


def built_facets() -> list[Any]:
    """Each facet as a task builds it: a finished generation, a failed one never submitted, a finished batch."""
    return [
        pytest.param(
            lineage.on_complete(RESULT, "https://gateway.example.com").run_facets[lineage.GENERATION_FACET],
            id="generation",
        ),
        pytest.param(
            lineage.on_failure(REQUEST, None, None).run_facets[lineage.GENERATION_FACET], id="failed-generation"
        ),
        pytest.param(
            lineage.batch_lineage("s3://tables/b.jsonl", "s3://videos/b/", BATCH).run_facets[lineage.BATCH_FACET],
            id="batch",
        ),
    ]


def shipped_schema(schema_url: str) -> dict[str, Any]:
    """The schema file a ``_schemaURL`` names (a path in the repository), read where the package keeps it."""
    document = schema_url.partition("#")[0]
    prefix = f"{RAW}/{__version__}/"
    assert document.startswith(prefix), document
    path = Path(airflow_provider_ltx2.__file__).resolve().parents[1] / document.removeprefix(prefix)
    return json.loads(path.read_text(encoding="utf-8"))


def own_fields(facet_class: type) -> list[attrs.Attribute]:
    """The facet's fields, less OpenLineage's ``_producer`` and ``_schemaURL``."""
    base = {field.name for field in attrs.fields(RunFacet)}
    return [field for field in attrs.fields(facet_class) if field.name not in base]


def json_type(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return JSON_TYPES[typing.get_origin(hint) or hint]


@pytest.mark.parametrize("facet", built_facets())
def test_each_facet_names_this_provider_at_its_version_and_its_own_schema(facet: Any) -> None:
    serialised = Serde.to_dict(facet)  # as the OpenLineage client sends it

    name = type(facet).__name__
    assert serialised["_producer"] == f"{REPOSITORY}/tree/{__version__}"
    assert serialised["_schemaURL"] == (
        f"{RAW}/{__version__}/airflow_provider_ltx2/lineage_schemas/{name}.json#/$defs/{name}"
    )


def test_a_producer_given_is_kept() -> None:
    facet = lineage.Ltx2GenerationRunFacet(parameters={}, priceUsd=0.0, producer="https://example.com/mine")

    assert Serde.to_dict(facet)["_producer"] == "https://example.com/mine"


@pytest.mark.parametrize("facet_class", FACET_CLASSES, ids=lambda cls: cls.__name__)
def test_the_shipped_schema_describes_every_field_of_the_facet_and_no_other(facet_class: type) -> None:
    name = facet_class.__name__
    schema_url = lineage.schema_url(name)
    schema = shipped_schema(schema_url)

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{RAW}/main/airflow_provider_ltx2/lineage_schemas/{name}.json"
    assert schema_url.partition("#")[2] == f"/$defs/{name}" and list(schema["$defs"]) == [name]
    base, own = schema["$defs"][name]["allOf"]
    assert base == {"$ref": RUN_FACET_URL}
    fields = own_fields(facet_class)
    hints = typing.get_type_hints(facet_class)
    assert {prop: spec["type"] for prop, spec in own["properties"].items()} == {
        field.name: json_type(hints[field.name]) for field in fields
    }
    assert all(spec.get("description") for spec in own["properties"].values())
    assert sorted(own["required"]) == sorted(field.name for field in fields if field.default is attrs.NOTHING)


@pytest.mark.parametrize("facet", built_facets())
def test_a_serialised_facet_is_valid_against_the_schema_its_url_names(facet: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    serialised = Serde.to_dict(facet)
    schema = shipped_schema(serialised["_schemaURL"])
    jsonschema.Draft202012Validator.check_schema(schema)
    # The shipped file answers for the URL the facet names; an unregistered URL fails to resolve, never fetched.
    registry = referencing.Registry().with_resources(
        [
            (serialised["_schemaURL"].partition("#")[0], referencing.Resource.from_contents(schema)),
            (RUN_FACET_URL.partition("#")[0], referencing.Resource.from_contents(OPENLINEAGE_BASE_FACETS)),
        ]
    )
    validator = jsonschema.Draft202012Validator({"$ref": serialised["_schemaURL"]}, registry=registry)

    validator.validate(serialised)
    # and the schema holds a facet to it: a field of the wrong type, or no producer, is refused
    field = own_fields(type(facet))[0].name
    assert not validator.is_valid({**serialised, field: []})
    assert not validator.is_valid({key: value for key, value in serialised.items() if key != "_producer"})
