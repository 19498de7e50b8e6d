"""OpenLineage for the provider's tasks: the image in, the MP4 out, and the gateway request behind the run.

Needs the ``openlineage`` extra (``apache-airflow-providers-openlineage``); only the tasks'
``get_openlineage_facets_on_complete`` / ``..._on_failure`` import this module, so without the extra
nothing of it is loaded. The OpenLineage listener prefers these methods to Airflow's hook-level lineage,
which would otherwise report the download's temporary ``.part`` file instead of the MP4.

Everything comes from what the task that just ran holds (``tasks.GenerationFacts``: its result dict, or as far
as it got, its request and request id, and the gateway's base URL), never from XCom or a connection
lookup, which the listener's forked emitter cannot make. The request holds the image's original URI and
never a key or a signed URL; dataset names also drop any query string and user info, as OpenLineage's
naming does.

The provider's own facets (``ltx2_generation``, ``ltx2_batch``) name this provider as their ``_producer``
(its repository at this version) and, as ``_schemaURL``, their JSON schema, shipped in
``airflow_provider_ltx2/lineage_schemas/`` and linked in the repository at this version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    ExternalQueryRunFacet,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
    RunFacet,
)
from airflow.providers.openlineage.extractors import OperatorLineage
from attrs import define

from airflow_provider_ltx2 import REPOSITORY_URL, __version__
from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD

# The provider's code at this version, as OpenLineage asks a facet's producer to be (a repository URL at a tag).
PRODUCER = f"{REPOSITORY_URL}/tree/{__version__}"
# Where the facets' schemas live in the repository (and in the installed package), and their raw URL at this version.
SCHEMAS_PATH = "airflow_provider_ltx2/lineage_schemas"
SCHEMAS_URL = (
    f"{REPOSITORY_URL.replace('https://github.com/', 'https://raw.githubusercontent.com/', 1)}"
    f"/{__version__}/{SCHEMAS_PATH}"
)

GENERATION_FACET = "ltx2_generation"
DEFAULT_PORTS = {"http": 80, "https": 443}
BUCKET_SCHEMES = {"s3": "s3", "s3a": "s3", "s3n": "s3", "gs": "gs", "gcs": "gs"}


def dataset_name(uri: str) -> tuple[str, str]:
    """OpenLineage's (namespace, name) of a URI: ``https://host`` + ``/path``, ``s3://bucket`` + ``key``,
    ``gs://bucket`` + ``key``, ``file`` + ``/path``; any other scheme ``scheme://authority`` + path.

    Query and fragment are never part of a name (a signed URL's signature lives in its query), nor is a
    password; an http(s) URL also loses its user name and default port.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme in ("", "file"):
        return ("file" if not host else f"file://{host}"), parts.path
    if scheme in BUCKET_SCHEMES:
        return f"{BUCKET_SCHEMES[scheme]}://{host}", parts.path.lstrip("/")
    if scheme in DEFAULT_PORTS:
        port = parts.port
        authority = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
        return f"{scheme}://{authority}", parts.path or "/"
    # e.g. abfss://container@account.dfs.core.windows.net: the user part names the container
    authority = parts.netloc.rsplit("@", 1)[-1] if parts.password is not None else parts.netloc
    return f"{scheme}://{authority}", parts.path


def schema_url(facet: str) -> str:
    """The ``_schemaURL`` of one of the provider's facets: its schema file at this version, pointing at its
    definition (``.../Ltx2BatchRunFacet.json#/$defs/Ltx2BatchRunFacet``)."""
    return f"{SCHEMAS_URL}/{facet}.json#/$defs/{facet}"


@define
class Ltx2RunFacet(RunFacet):
    """A run facet of this provider: its ``_producer`` is ``PRODUCER`` unless one is given (a plain
    OpenLineage facet would take the one the OpenLineage provider set for its own events)."""

    def __attrs_post_init__(self) -> None:
        if not self._producer:
            self._producer = PRODUCER
        super().__attrs_post_init__()

    @classmethod
    def _get_schema(cls) -> str:  # a staticmethod in OpenLineage: here the class names its own schema
        return schema_url(cls.__name__)


@define
class Ltx2GenerationRunFacet(Ltx2RunFacet):
    """The generation a run asked for: its parameters (the image is the run's input) and its price."""

    parameters: dict[str, Any]
    priceUsd: float  # camelCase: OpenLineage's field style
    reused: bool = False
    submittedAt: str | None = None
    completedAt: str | None = None


def on_complete(result: Mapping[str, Any] | None, gateway_url: str | None) -> OperatorLineage:
    """The lineage of a finished task, from its result dict."""
    if result is None:
        return OperatorLineage()
    lineage = _lineage(result.get("request"), result.get("request_id"), gateway_url, result)
    video = result.get("output_uri") or result.get("video_url")
    if isinstance(video, str) and video:
        namespace, name = dataset_name(video)
        facets: dict[str, Any] = {}
        if isinstance(size := result.get("bytes"), int):
            facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(size=size, fileCount=1)
        lineage.outputs.append(OutputDataset(namespace=namespace, name=name, outputFacets=facets))
    return lineage


def on_failure(request: Mapping[str, Any] | None, request_id: str | None, gateway_url: str | None) -> OperatorLineage:
    """The lineage of a failed task: the request it had validated (or was handed) and its id, if submitted."""
    return _lineage(request, request_id, gateway_url, {})


def _lineage(request: Any, request_id: Any, gateway_url: str | None, result: Mapping[str, Any]) -> OperatorLineage:
    lineage: OperatorLineage = OperatorLineage()
    if isinstance(request, Mapping):
        image = request.get("image_url")
        if isinstance(image, str) and image:
            lineage.inputs.append(Dataset(*dataset_name(image)))
        reused = bool(result.get("reused"))
        lineage.run_facets[GENERATION_FACET] = Ltx2GenerationRunFacet(
            parameters={name: value for name, value in request.items() if name != "image_url"},
            priceUsd=0.0 if reused or not request_id else PRICE_PER_VIDEO_USD,
            reused=reused,
            submittedAt=result.get("submitted_at"),
            completedAt=result.get("completed_at"),
        )
    if isinstance(request_id, str) and request_id and gateway_url:
        # The gateway's base URL only: the key stays in the connection.
        lineage.run_facets["externalQuery"] = ExternalQueryRunFacet(externalQueryId=request_id, source=gateway_url)
    return lineage


BATCH_FACET = "ltx2_batch"


@define
class Ltx2BatchRunFacet(Ltx2RunFacet):
    """A batch's outcome: its rows by fate, what it paid, what it was estimated at, and its manifest."""

    total: int
    generated: int
    reused: int
    failed: int
    planned: int
    costUsd: float
    estimatedCostUsd: float
    manifestUri: str


def batch_lineage(requests: Any, output_prefix: Any, result: Mapping[str, Any] | None) -> OperatorLineage:
    """A batch task's lineage from the operator as it finished: the request table (a file) in, the output
    prefix out, its counts and cost as a run facet. Nothing is read back from XCom."""
    lineage: OperatorLineage = OperatorLineage()
    if isinstance(requests, str) and requests:
        lineage.inputs.append(Dataset(*dataset_name(requests)))
    if isinstance(output_prefix, str) and output_prefix:
        facets: dict[str, Any] = {}
        if result:
            videos = int(result["generated"]) + int(result["reused"])
            facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=videos, fileCount=videos)
        namespace, name = dataset_name(output_prefix.rstrip("/"))
        lineage.outputs.append(OutputDataset(namespace=namespace, name=name, outputFacets=facets))
    if result:
        lineage.run_facets[BATCH_FACET] = Ltx2BatchRunFacet(
            total=result["total"],
            generated=result["generated"],
            reused=result["reused"],
            failed=result["failed"],
            planned=result["planned"],
            costUsd=result["cost_usd"],
            estimatedCostUsd=result["estimated_cost_usd"],
            manifestUri=result["manifest_uri"],
        )
    return lineage
