"""The provider's promises against hostile and broken peers: a gateway that echoes secrets in every escaping
or redirects, a polling URL on another host, images on private addresses, a host that drips its bytes.

Real servers on loopback throughout (``LoopbackServer``, ``HostileGateway``, moto's S3 for signed URLs); a
peer that must hear nothing records everything it hears.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ltx2.api.calls import poll_call
from airflow_provider_ltx2.api.jobs import Job
from airflow_provider_ltx2.api.retries import RetryPolicy
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2Timeout, Ltx2ValidationError
from airflow_provider_ltx2.hooks import ltx2 as hook_module
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoBatchOperator, Ltx2GenerateVideoOperator
from airflow_provider_ltx2.sensors.ltx2 import Ltx2VideoSensor
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.simulator.server import SAMPLE_JPG
from tests.conftest import ESCAPINGS, KEY, Deferrals, Heard, HostileGateway, run_deferrable
from tests.fakes import task_context
from tests.integration.test_storage import put, secrets_of

JPEG = SAMPLE_JPG.read_bytes()
ONE_ATTEMPT = RetryPolicy(max_attempts=1)


def leaks(text: str, signed_urls: list[str]) -> list[str]:
    """Which secrets ``text`` holds: the key, and each signed URL's signature as sent and decoded."""
    secrets = [KEY, *(secret for url in signed_urls for secret in secrets_of(url))]
    return [secret for secret in secrets if secret in text]


def everything_said(error: BaseException, context: dict[str, Any], seen: Deferrals, caplog: Any, capsys: Any) -> str:
    """All a user or the metadata DB could read of a task: its error, XComs, logs, trigger kwargs and events."""
    said = capsys.readouterr()
    return "\n".join(
        [str(error), json.dumps(context["ti"].xcom, default=str), caplog.text, said.out, said.err]
        + [json.dumps(kwargs) for kwargs in seen.kwargs]
        + [json.dumps(event) for event in seen.events]
    )


# ------------------------------------------------------------------------------------ the gateway's echo


@pytest.mark.parametrize("escaping", ESCAPINGS)
@pytest.mark.parametrize("deferrable", [False, True], ids=["in the worker", "deferrable"])
def test_a_gateway_echoing_the_signed_url_and_the_key_leaks_neither(
    loopback_server: Any,
    bucket: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
    capsys: Any,
    escaping: str,
    deferrable: bool,
) -> None:
    """The submit's reply and every poll's echo the signed image URL and the key, escaped as Go, PHP or others
    escape JSON; the failure that ends the task is in XCom, the logs, the trigger's kwargs and events."""
    gateway = HostileGateway(loopback_server, escaping)
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", gateway.connection())
    caplog.set_level("DEBUG")
    operator = Ltx2GenerateVideoOperator(
        task_id="generate",
        image_url=put(bucket),
        image_conn_id="ltx2_s3",
        prompt="the cat turns its head",
        deferrable=deferrable,
        poll_interval=0.1,
        timeout=20,
    )
    context, seen = task_context(), Deferrals()

    with pytest.raises(Ltx2Error) as failed:
        run_deferrable(operator, context, seen) if deferrable else operator.execute(context)

    signed = gateway.sent_image_urls()
    assert len(signed) == 1 and "Signature=" in signed[0]
    assert "could not fetch" in str(failed.value)  # the gateway's words are kept, its secrets are not
    assert leaks(everything_said(failed.value, context, seen, caplog, capsys), signed) == []


@pytest.mark.slow
@pytest.mark.parametrize("escaping", ESCAPINGS)
@pytest.mark.parametrize(
    ("submit_status", "deferrable"),
    [(400, False), (200, False), (200, True)],
    ids=["refused at the submit", "failed at a poll", "failed at a poll, deferred"],
)
def test_a_batch_keeps_no_echoed_secret(
    loopback_server: Any,
    bucket: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    escaping: str,
    submit_status: int,
    deferrable: bool,
) -> None:
    """Rows the gateway refuses or fails, echoing the request, are failed rows: their errors are in the manifest,
    the progress in the task state store and, deferred, the batch trigger's kwargs (the metadata DB)."""
    gateway = HostileGateway(loopback_server, escaping, submit_status=submit_status)
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", gateway.connection())
    image = put(bucket)
    operator = Ltx2GenerateVideoBatchOperator(
        task_id="generate_batch",
        requests=[{"id": f"row-{number}", "image_url": image, "prompt": f"take {number}"} for number in range(3)],
        image_conn_id="ltx2_s3",
        output_prefix=f"file://{tmp_path}",
        max_failed_items=3,
        max_concurrent_jobs=1,  # a row fails before the next one is submitted and handed to a trigger
        poll_interval=0.1,
        deferrable=deferrable,
    )
    context, seen = task_context(), Deferrals()

    result = run_deferrable(operator, context, seen, limit=20) if deferrable else operator.execute(context)

    manifest = (tmp_path / "manifest.jsonl").read_text()
    assert result["failed"] == 3 and manifest.count("could not fetch") == 3
    kept = [manifest, json.dumps(context["ti"].xcom, default=str), json.dumps(context["task_state_store"].values)]
    assert not deferrable or "could not fetch" in json.dumps(seen.kwargs[-1])  # the failed rows travel with it
    said = "\n".join(kept + [json.dumps(kwargs) for kwargs in seen.kwargs] + [json.dumps(e) for e in seen.events])
    assert leaks(said, gateway.sent_image_urls()) == []


# ------------------------------------------------------------------------------------ where the key goes


def where_key_went(*servers: Any) -> list[Heard]:
    return [heard for server in servers for heard in server.heard if KEY in json.dumps(heard.headers)]


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_the_sensor_polls_only_the_gateway_whatever_polling_url_it_is_handed(
    simulator: SimulatorProcess, loopback_server: Any, tmp_path: Path, deferrable: bool
) -> None:
    simulator.configure(protocol="universal")  # a job with a polling URL, which the handed dict replaces
    elsewhere = loopback_server(lambda heard: (200, {}, b'{"status": "COMPLETED", "video_url": "https://x/v.mp4"}'))
    submit = Ltx2GenerateVideoOperator(
        task_id="submit", image_url=f"{simulator.base_url}/files/sample.jpg", prompt="a cat", wait_for_completion=False
    )
    submission = submit.execute(task_context())
    request_id = submission["request_id"]
    handed = {**submission, "polling_url": f"{elsewhere.base_url}/v2/requests/status/{request_id}"}
    sensor = Ltx2VideoSensor(
        task_id="wait", request_id=handed, poll_interval=0.1, timeout=20, deferrable=deferrable, mode="poke"
    )

    result = run_deferrable(sensor, task_context()) if deferrable else sensor.execute(task_context())

    assert result["request_id"] == request_id and result["status"] == "succeeded"
    assert elsewhere.heard == []


def test_a_sensor_argument_polling_url_elsewhere_is_rebuilt_on_the_gateway(simulator: SimulatorProcess) -> None:
    sensor = Ltx2VideoSensor(task_id="wait", request_id="abc", polling_url="https://evil.example/status/abc")

    assert sensor.wait.job.polling_url == "https://evil.example/status/abc"  # kept as given: the call decides
    assert poll_call(simulator.base_url, sensor.wait.job).url == f"{simulator.base_url}/v2/requests/status/abc"


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_redirect_from_the_gateway_is_not_followed_with_the_key(
    loopback_server: Any, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """requests and aiohttp would carry the key's header to wherever a redirect points."""
    elsewhere = loopback_server(lambda heard: (200, {}, b'{"status": "IN_QUEUE"}'))
    gateway = loopback_server(lambda heard: (302, {"Location": f"{elsewhere.base_url}/steal"}, b""))
    monkeypatch.setenv(
        "AIRFLOW_CONN_LTX2_DEFAULT", json.dumps({"conn_type": "ltx2", "host": gateway.base_url, "password": KEY})
    )
    hook = Ltx2Hook(retry_policy=ONE_ATTEMPT)
    job = Job("abc", f"{gateway.base_url}/v2/requests/status/abc")

    async def poll_async() -> None:
        async with hook.aconnect():
            await hook.aget_status(job)

    with pytest.raises(Ltx2Error, match="302"):
        hook.get_status(job) if path == "sync" else asyncio.run(poll_async())

    assert len(gateway.heard) == 1 and elsewhere.heard == []


# ------------------------------------------------------------------------------------ what the worker fetches


@pytest.fixture
def public_gateway(loopback_server: Any, monkeypatch: pytest.MonkeyPatch) -> HostileGateway:
    """A gateway the worker takes for a public one: its host, 127.0.0.1, "resolves" to a public address, while
    ``localhost`` resolves as it does (loopback). Connections are made as usual."""
    real = hook_module._addresses
    public = {"127.0.0.1": ["93.184.216.34"]}
    monkeypatch.setattr(hook_module, "_addresses", lambda host: public.get(host) or real(host))
    gateway = HostileGateway(loopback_server, "go")
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", gateway.connection())
    return gateway


def serving_jpeg(heard: Heard) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "image/jpeg"}, JPEG


def generate(image_url: str, **kwargs: Any) -> Ltx2GenerateVideoOperator:
    return Ltx2GenerateVideoOperator(
        task_id="generate", image_url=image_url, prompt="a cat", poll_interval=0.1, timeout=20, **kwargs
    )


@pytest.mark.parametrize("check_image", [True, False])
def test_an_image_on_a_private_address_is_refused_before_any_byte_for_a_public_gateway(
    public_gateway: HostileGateway, loopback_server: Any, check_image: bool
) -> None:
    """A row naming a loopback service (or a cloud's metadata address) is neither read nor paid for."""
    images = loopback_server(serving_jpeg)
    port = images.base_url.rsplit(":", 1)[1]

    for url in (
        f"http://localhost:{port}/cat.jpg",
        "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        f"http://[::1]:{port}/cat.jpg",
        f"http://2130706433:{port}/cat.jpg",  # 127.0.0.1 as one number
        f"http://0x7f000001:{port}/cat.jpg",  # and in hex
        f"http://[::ffff:127.0.0.1]:{port}/cat.jpg",  # mapped into IPv6
    ):
        with pytest.raises(Ltx2ValidationError, match="private address") as refused:
            generate(url, check_image=check_image, output_uri="file:///tmp/unused.mp4").execute(task_context())
        assert "cannot fetch it" in str(refused.value)

    assert images.heard == [] and public_gateway.submits == []


def test_a_video_on_a_private_address_is_not_downloaded_for_a_public_gateway(
    public_gateway: HostileGateway, loopback_server: Any
) -> None:
    """The gateway's reply names the video's URL: a hostile one may point it at the worker's own network."""
    inside = loopback_server(serving_jpeg)
    port = inside.base_url.rsplit(":", 1)[1]

    with pytest.raises(Ltx2ValidationError, match="private address"):
        b"".join(Ltx2Hook().stream(f"http://localhost:{port}/v.mp4"))

    assert inside.heard == []


def test_a_redirect_to_a_private_address_is_refused_before_any_byte(
    public_gateway: HostileGateway, loopback_server: Any
) -> None:
    inside = loopback_server(serving_jpeg)
    port = inside.base_url.rsplit(":", 1)[1]
    outside = loopback_server(lambda heard: (302, {"Location": f"http://localhost:{port}/cat.jpg"}, b""))

    with pytest.raises(Ltx2ValidationError, match="private address"):
        generate(f"{outside.base_url}/cat.jpg").execute(task_context())

    assert len(outside.heard) == 1 and inside.heard == [] and public_gateway.submits == []


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "{self}"],
    ids=["file", "another scheme", "a redirect loop"],
)
def test_a_redirect_nowhere_a_gateway_fetches_is_refused(
    simulator: SimulatorProcess, loopback_server: Any, location: str
) -> None:
    """A host may answer with any ``Location``: only http(s) is followed, and only a few times."""
    host = loopback_server(lambda heard: (302, {"Location": location.replace("{self}", heard.path)}, b""))

    with pytest.raises(Ltx2ValidationError, match=r"not an http|more than 5 redirects"):
        generate(f"{host.base_url}/cat.jpg").execute(task_context())

    assert len(host.heard) <= 6 and simulator.stats()["submits"] == 0


@pytest.mark.parametrize("length", ["abc", "٣", "-1"])
def test_a_content_length_that_is_no_number_does_not_break_the_read(
    simulator: SimulatorProcess, loopback_server: Any, length: str
) -> None:
    def answer(heard: Heard) -> Iterator[bytes]:
        yield f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {length}\r\n\r\n".encode()
        yield JPEG

    host = loopback_server(answer)

    assert b"".join(Ltx2Hook().stream(f"{host.base_url}/v.mp4")) == JPEG


def dripping(heard: Heard) -> Iterator[bytes]:
    """An answer that sends a byte a second, from its status line on."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n" + JPEG:
        yield bytes([byte])
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.parametrize("read", ["the check", "the identity"])
def test_an_image_read_ends_at_the_tasks_deadline_however_slowly_the_host_sends(
    simulator: SimulatorProcess, loopback_server: Any, read: str
) -> None:
    """requests bounds each socket read, not the whole; a byte a second kept a task reading for hours."""
    from airflow_provider_ltx2.lifecycle import Generation

    host = loopback_server(dripping)
    generation = Generation.prepare(
        Ltx2Hook(),
        {"image_url": f"{host.base_url}/cat.jpg", "prompt": "a cat"},
        image_conn_id=None,
        image_url_expires_in=3600,
        log=Ltx2Hook().log,
        deadline=time.time() + 2,
    )
    started = time.monotonic()

    with pytest.raises(Ltx2ValidationError, match="did not end within"):
        generation.check_image() if read == "the check" else generation.fingerprint

    assert time.monotonic() - started < 4


def test_a_video_download_ends_at_its_deadline(simulator: SimulatorProcess, loopback_server: Any) -> None:
    host = loopback_server(dripping)
    started = time.monotonic()

    with pytest.raises(Ltx2Timeout, match="did not end within"):
        b"".join(Ltx2Hook().stream(f"{host.base_url}/v.mp4", deadline=time.time() + 2))

    assert time.monotonic() - started < 4


# ------------------------------------------------------------------------------------ a table, in full or not at all


@pytest.mark.parametrize("check_image", [True, False])
def test_a_table_that_cannot_be_generated_in_full_pays_nothing(
    simulator: SimulatorProcess, tmp_path: Path, check_image: bool
) -> None:
    """A local file in row 3 used to fail at its submit, after rows 1 and 2 were paid for."""
    local = tmp_path / "cat.jpg"
    local.write_bytes(JPEG)
    public = f"{simulator.base_url}/files/sample.jpg"
    table = [{"id": f"row-{n}", "image_url": public, "prompt": f"take {n}"} for n in (1, 2)]
    table.append({"id": "row-3", "image_url": f"file://{local}", "prompt": "take 3"})
    operator = Ltx2GenerateVideoBatchOperator(
        task_id="generate_batch",
        requests=table,  # written in the DAG file: the author's, so no prefix rule stops the local file first
        output_prefix=f"file://{tmp_path}/out",
        check_image=check_image,
        poll_interval=0.1,
    )

    with pytest.raises(Ltx2ValidationError, match=r"Row 'row-3' \(row 3\).*cannot make a signed URL"):
        operator.execute(task_context())

    assert simulator.stats()["submits"] == 0 and not (tmp_path / "out" / "manifest.jsonl").exists()


def test_a_dripping_image_cannot_wedge_a_batchs_survey(
    simulator: SimulatorProcess, loopback_server: Any, tmp_path: Path
) -> None:
    host = loopback_server(dripping)
    operator = Ltx2GenerateVideoBatchOperator(
        task_id="generate_batch",
        requests=[{"id": "slow", "image_url": f"{host.base_url}/cat.jpg", "prompt": "a cat"}],
        output_prefix=f"file://{tmp_path}",
        timeout=2,
        poll_interval=0.1,
    )
    started = time.monotonic()

    with pytest.raises(Ltx2ValidationError, match=r"Row 'slow' \(row 1\).*did not end within"):
        operator.execute(task_context())

    assert time.monotonic() - started < 5 and simulator.stats()["submits"] == 0


def test_a_huge_image_uri_in_a_table_makes_a_short_error(simulator: SimulatorProcess, tmp_path: Path) -> None:
    table = tmp_path / "table.jsonl"
    table.write_text(json.dumps({"id": "huge", "image_url": "s3://media/" + "x" * 1_000_000, "prompt": "a cat"}))
    operator = Ltx2GenerateVideoBatchOperator(
        task_id="generate_batch", requests=f"file://{table}", output_prefix=f"file://{tmp_path}/out"
    )

    with pytest.raises(Ltx2ValidationError, match=r"Row 'huge' \(row 1\)") as refused:
        operator.execute(task_context())

    assert len(str(refused.value)) < 1_000 and "1,000,011 characters" in str(refused.value)
