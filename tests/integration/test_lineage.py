"""OpenLineage: dataset naming, the facets built from what a task holds, and the events of real ``dags test`` runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.serde import Serde

from airflow_provider_ltx2 import lineage
from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.tasks import GenerationFacts
from tests.conftest import KEY, example_dag_env
from tests.fakes import FINISHED_REQUEST, FINISHED_RESULT
from tests.integration.test_dags import airflow

GATEWAY = "https://gateway.example.com"
IMAGE = ("s3://stills", "cats/cat.jpg")  # the dataset of REQUEST's image
REQUEST, RESULT = FINISHED_REQUEST, FINISHED_RESULT


@pytest.mark.parametrize(
    ("uri", "namespace", "name"),
    [
        ("https://images.example.com/cats/cat.jpg", "https://images.example.com", "/cats/cat.jpg"),
        ("http://127.0.0.1:8089/files/sample.jpg", "http://127.0.0.1:8089", "/files/sample.jpg"),
        ("https://Images.Example.com:443/a.png", "https://images.example.com", "/a.png"),
        # a signed URL: the signature (query) and any user info are no part of the name
        ("https://user:pw@b.s3.amazonaws.com/k.jpg?X-Amz-Signature=s3cr3t#f", "https://b.s3.amazonaws.com", "/k.jpg"),
        ("s3://bucket/videos/2026/1.mp4", "s3://bucket", "videos/2026/1.mp4"),
        ("s3a://bucket/key", "s3://bucket", "key"),
        ("gs://bucket/videos/1.mp4", "gs://bucket", "videos/1.mp4"),
        ("gcs://bucket/videos/1.mp4", "gs://bucket", "videos/1.mp4"),
        ("file:///a/b.mp4", "file", "/a/b.mp4"),
        ("/a/b.mp4", "file", "/a/b.mp4"),
        ("file://host/a/b.mp4", "file://host", "/a/b.mp4"),
        ("abfss://box@acct.dfs.core.windows.net/v.mp4", "abfss://box@acct.dfs.core.windows.net", "/v.mp4"),
        ("ftp://user:pw@files.example.com/v.mp4", "ftp://files.example.com", "/v.mp4"),
    ],
)
def test_dataset_names_follow_openlineage_naming(uri: str, namespace: str, name: str) -> None:
    assert lineage.dataset_name(uri) == (namespace, name)


def as_json(found: Any) -> dict[str, Any]:
    return {
        "inputs": [json.loads(Serde.to_json(dataset)) for dataset in found.inputs],
        "outputs": [json.loads(Serde.to_json(dataset)) for dataset in found.outputs],
        "run_facets": {name: json.loads(Serde.to_json(facet)) for name, facet in found.run_facets.items()},
    }


def test_a_finished_generation_has_the_image_in_the_mp4_out_and_the_request() -> None:
    found = as_json(lineage.on_complete(RESULT, GATEWAY))

    assert [(d["namespace"], d["name"]) for d in found["inputs"]] == [IMAGE]
    [output] = found["outputs"]
    assert (output["namespace"], output["name"]) == ("s3://videos", "2026/1.mp4")
    assert output["outputFacets"]["outputStatistics"]["size"] == 1234
    query = found["run_facets"]["externalQuery"]
    assert (query["externalQueryId"], query["source"]) == ("ltx2-v-1", GATEWAY)
    generation = found["run_facets"]["ltx2_generation"]
    assert generation["parameters"] == {"prompt": "the cat turns its head", "duration": 6}
    assert generation["priceUsd"] == PRICE_PER_VIDEO_USD
    assert generation["completedAt"] == RESULT["completed_at"]
    assert KEY not in json.dumps(found) and "X-Amz-Signature" not in json.dumps(found)


def test_without_a_download_the_output_is_the_video_url_and_a_reused_video_costs_nothing() -> None:
    found = as_json(lineage.on_complete({**RESULT, "output_uri": None, "bytes": None, "reused": True}, GATEWAY))

    [output] = found["outputs"]
    assert (output["namespace"], output["name"], output["outputFacets"]) == ("https://cdn.example.com", "/v/1.mp4", {})
    assert found["run_facets"]["ltx2_generation"]["priceUsd"] == 0.0


@pytest.mark.parametrize(
    ("facts", "inputs", "request_id", "price"),
    [
        # the operator failed while waiting: it had paid for its request
        (GenerationFacts(REQUEST, "ltx2-v-2", GATEWAY), [IMAGE], "ltx2-v-2", PRICE_PER_VIDEO_USD),
        # it failed before submitting (e.g. the image check): nothing paid, no gateway request
        (GenerationFacts(REQUEST), [IMAGE], None, 0.0),
        # a sensor given a bare request id: only the request id is known
        (GenerationFacts(None, "ltx2-v-3", GATEWAY), [], "ltx2-v-3", None),
        # it failed before validating its request: nothing is known
        (GenerationFacts(), [], None, None),
    ],
)
def test_a_failed_task_names_what_it_had_asked_for(
    facts: GenerationFacts, inputs: list[tuple[str, str]], request_id: str | None, price: Any
) -> None:
    found = as_json(lineage.on_failure(facts.request, facts.request_id, facts.gateway_url))

    assert [(d["namespace"], d["name"]) for d in found["inputs"]] == inputs
    assert found["outputs"] == []
    assert found["run_facets"].get("externalQuery", {}).get("externalQueryId") == request_id
    assert found["run_facets"].get("ltx2_generation", {}).get("priceUsd") == price


@pytest.mark.parametrize("kind", ["operator", "sensor", "decorator"])
def test_openlineage_takes_each_task_types_own_lineage(kind: str) -> None:
    """The extractor OpenLineage picks for the operator, the sensor and ``@task.ltx2_video`` calls this module,
    with what the task holds: a task instance that answers no XCom call is enough."""
    from airflow.providers.common.compat.sdk import DAG
    from airflow.providers.openlineage.extractors.base import DefaultExtractor
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    from airflow_provider_ltx2.decorators.ltx2 import ltx2_video_task
    from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator
    from airflow_provider_ltx2.sensors.ltx2 import Ltx2VideoSensor

    with DAG("lineage_extractor", schedule=None):
        task = {
            "operator": lambda: Ltx2GenerateVideoOperator(task_id="generate", image_url="", prompt=""),
            "sensor": lambda: Ltx2VideoSensor(task_id="generate", request_id="ltx2-v-9"),
            "decorator": lambda: ltx2_video_task(lambda: REQUEST, task_id="generate")().operator,
        }[kind]()
    assert ExtractorManager().get_extractor_class(task) is DefaultExtractor
    extractor = DefaultExtractor(task)
    no_xcom = NoCallsTaskInstance()

    assert as_json(extractor.extract_on_failure(no_xcom))["run_facets"] == {}
    task.generation_facts.request_id, task.generation_facts.gateway_url = "ltx2-v-9", GATEWAY
    failed = as_json(extractor.extract_on_failure(no_xcom))
    assert failed["run_facets"]["externalQuery"]["externalQueryId"] == "ltx2-v-9"
    task.generation_facts.result = RESULT
    done = as_json(extractor.extract_on_complete(no_xcom))
    assert [(d["namespace"], d["name"]) for d in done["outputs"]] == [("s3://videos", "2026/1.mp4")]


class NoCallsTaskInstance:
    """A task instance as OpenLineage's forked emitter has it under ``dags test``: any call to it would hang."""

    def xcom_pull(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the lineage pulled XCom: OpenLineage's forked emitter cannot")


@pytest.mark.dags
@pytest.mark.slow
def test_the_complete_event_of_a_dags_test_run(simulator: SimulatorProcess, airflow_home: Path, tmp_path: Path) -> None:
    """The OpenLineage provider with its file transport: the task's own facets win over hook-level lineage,
    which saw only the download's temporary ``.part`` file being moved into place."""
    events = tmp_path / "openlineage.json"
    done = airflow(
        airflow_home,
        "dags",
        "test",
        "example_ltx2_single_video",
        **example_dag_env(simulator, tmp_path / "videos"),
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        AIRFLOW__OPENLINEAGE__NAMESPACE="ltx2-tests",
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]

    text = events.read_text()
    emitted = [json.loads(line) for line in text.splitlines()]
    [complete] = [e for e in emitted if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".generate_video")]
    [video] = (tmp_path / "videos").rglob("*.mp4")
    [job] = simulator.stats()["job_times"]
    assert complete["job"]["namespace"] == "ltx2-tests"
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [(simulator.base_url, "/files/sample.jpg")]
    [output] = complete["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(video))
    assert output["outputFacets"]["outputStatistics"]["size"] == video.stat().st_size
    facets = complete["run"]["facets"]
    assert facets["externalQuery"]["externalQueryId"] == job["request_id"]
    assert facets["externalQuery"]["source"] == simulator.base_url
    assert facets["ltx2_generation"]["parameters"] == {
        "prompt": "Slow dolly-in on a lighthouse at golden hour, waves breaking below, gulls circling",
        "duration": 6,
        "resolution": "1080p",
        "aspect_ratio": "16:9",
    }
    assert facets["ltx2_generation"]["priceUsd"] == PRICE_PER_VIDEO_USD
    assert ".part" not in text, "the download's temporary file is in an event"
    assert KEY not in text, "the key leaked into an OpenLineage event"


@pytest.mark.dags
@pytest.mark.slow
def test_a_request_refused_before_paying_fails_once_with_its_lineage(
    simulator: SimulatorProcess, airflow_home: Path, tmp_path: Path
) -> None:
    """Under OpenLineage's default settings the FAIL event names the image and the request, and the log holds
    the refusal alone: no "XCom not found" error from the "LTX-2 video" link of a video never made."""
    events = tmp_path / "openlineage.json"
    missing = f"{simulator.base_url}/files/missing.jpg"
    done = airflow(
        airflow_home,
        "dags",
        "test",
        "example_ltx2_single_video",
        "--conf",
        json.dumps({"image_url": missing}),
        **example_dag_env(simulator, tmp_path / "videos"),
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
    )
    log = done.stdout + done.stderr
    assert f"Invalid LTX-2 request field image_url={missing!r}: not found (HTTP 404)" in log, log[-5000:]
    assert "XCom not found" not in log, log[-5000:]
    assert simulator.stats()["submits"] == 0

    emitted = [json.loads(line) for line in events.read_text().splitlines()]
    [failed] = [e for e in emitted if e["eventType"] == "FAIL" and e["job"]["name"].endswith(".generate_video")]
    assert [(d["namespace"], d["name"]) for d in failed["inputs"]] == [(simulator.base_url, "/files/missing.jpg")]
    facets = failed["run"]["facets"]
    assert facets["ltx2_generation"]["priceUsd"] == 0.0 and "externalQuery" not in facets
