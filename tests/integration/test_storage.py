"""Private images, the image check and reuse, in process against the simulator and moto's S3 server.

An ``s3://`` image reaches the gateway as a short-lived signed URL that nothing else keeps (result, XCom,
trigger kwargs, logs, rendered fields, sidecar); a missing or broken image fails before the paid submit;
a video saved with its sidecar is returned again, without any gateway call, by a rerun of the same request.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import requests

from airflow_provider_ltx2 import defaults, storage
from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator
from airflow_provider_ltx2.simulator import render as clips
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.triggers.ltx2 import Ltx2CapacityTrigger, Ltx2VideoTrigger
from tests.conftest import KEY, REPO, S3_BUCKET, Deferrals, bucket_keys, run_deferrable
from tests.fakes import RecordingLog, task_context
from tests.integration.decorators.test_decorator import decorated

JPEG = (REPO / "airflow_provider_ltx2" / "simulator" / "sample.jpg").read_bytes()
PROMPT = "A paper boat drifts down a rain-soaked street, camera follows at water level"
IMAGE_KEY = "images/boat.jpg"
VIDEO_KEY = "videos/boat.mp4"
SIDECAR_KEY = VIDEO_KEY + ".json"
VIDEO = f"s3://{S3_BUCKET}/{VIDEO_KEY}"
SIDECAR_FIELDS = {
    *("version", "fingerprint", "request_id", "request", "video_url", "output_uri", "bytes", "sha256"),
    *("submitted_at", "completed_at", "price_usd"),
}
TEAL = (20, 150, 140)  # a colour the bundled sample has little of, so a clip of it is told apart at once

needs_av = pytest.mark.skipif(not clips.available(), reason="rendering needs the render extra (PyAV and numpy)")


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    """Every log line of the task, its hooks and its triggers."""
    recording = RecordingLog()
    for cls in (Ltx2GenerateVideoOperator, Ltx2Hook, Ltx2VideoTrigger, Ltx2CapacityTrigger):
        monkeypatch.setattr(cls, "log", property(lambda _: recording))
    return recording


def operator(**kwargs: Any) -> Ltx2GenerateVideoOperator:
    arguments = {
        "task_id": "generate",
        "image_url": f"s3://{S3_BUCKET}/{IMAGE_KEY}",
        "prompt": PROMPT,
        "duration": 2,
        "poll_interval": 0.1,
        "timeout": 60,
        "deferrable": False,
        "image_conn_id": "ltx2_s3",
        "output_uri": VIDEO,
        "output_conn_id": "ltx2_s3",
    }
    return Ltx2GenerateVideoOperator(**{**arguments, **kwargs})


def put(bucket: Any, key: str = IMAGE_KEY, body: bytes = JPEG) -> str:
    bucket.put_object(Bucket=S3_BUCKET, Key=key, Body=body)
    return f"s3://{S3_BUCKET}/{key}"


def read(bucket: Any, key: str) -> bytes:
    return bytes(bucket.get_object(Bucket=S3_BUCKET, Key=key)["Body"].read())


def sent_image_urls(simulator: SimulatorProcess) -> list[str]:
    """The ``image_url`` of every submit the gateway received (its request log is where a signed URL belongs)."""
    return [body["image_url"] for body in simulator.stats()["requests"] if isinstance(body, dict)]


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def secrets_of(signed_url: str) -> list[str]:
    """What must be found nowhere but at the gateway: the signature (as sent and decoded) and the whole URL."""
    sent = next(part for part in urlsplit(signed_url).query.split("&") if part.split("=")[0].endswith("Signature"))
    signature = sent.split("=", 1)[1]
    assert len(unquote(signature)) >= 20, signed_url
    return [signed_url, signature, unquote(signature)]


def expires_at(signed_url: str) -> float:
    """When a presigned S3 URL stops working (SigV2 ``Expires``, or SigV4 ``X-Amz-Date`` + ``X-Amz-Expires``)."""
    fields = query(signed_url)
    if "Expires" in fields:
        return float(fields["Expires"])
    signed = datetime.strptime(fields["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return signed.timestamp() + int(fields["X-Amz-Expires"])


def assert_kept_nowhere(signed_url: str, **records: Any) -> None:
    for secret in secrets_of(signed_url):
        for name, record in records.items():
            text = record if isinstance(record, str) else json.dumps(record, default=repr)
            assert secret not in text, f"the signed image URL is in the {name}"


def outlet_events() -> Any:
    """An empty ``context["outlet_events"]``, as the task runner gives a task with outlets."""
    try:
        from airflow.sdk.execution_time.context import OutletEventAccessors
    except ImportError:  # Airflow 2.11
        from airflow.utils.context import OutletEventAccessors
    return OutletEventAccessors()


# ------------------------------------------------------------------------------------ private images


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_a_private_image_reaches_the_gateway_as_a_signed_url_kept_nowhere_else(
    simulator: SimulatorProcess,
    bucket: Any,
    s3_endpoint: str,
    logs: RecordingLog,
    caplog: pytest.LogCaptureFixture,
    deferrable: bool,
) -> None:
    caplog.set_level("INFO")
    image = put(bucket)
    plain = f"{s3_endpoint}/{S3_BUCKET}/{IMAGE_KEY}"
    assert requests.get(plain, timeout=10).status_code == 403, "the bucket is private: only a signed URL reads it"
    op = operator(deferrable=deferrable, image_url_expires_in=900)
    ctx, seen = task_context(), Deferrals()
    started = time.time()

    result = run_deferrable(op, ctx, seen)

    [sent] = sent_image_urls(simulator)
    assert sent.split("?")[0] == plain and "Signature=" in sent
    assert requests.get(sent, timeout=10).content == JPEG, "the gateway reads the image through the signed URL"
    assert started + 900 - 2 <= expires_at(sent) <= time.time() + 900 + 2, "valid for image_url_expires_in"
    assert seen.triggers == (["Ltx2VideoTrigger"] if deferrable else [])
    assert result["request"]["image_url"] == ctx["ti"].xcom["request"]["image_url"] == op.image_url == image
    assert_kept_nowhere(
        sent,
        result=result,
        xcom=ctx["ti"].xcom,
        trigger_kwargs=seen.kwargs,
        trigger_events=seen.events,
        rendered_fields={name: getattr(op, name) for name in op.template_fields},
        task_logs=logs.records,
        other_logs=caplog.text,
        sidecar=read(bucket, SIDECAR_KEY).decode(),
    )
    assert KEY not in caplog.text


def test_a_throttled_private_submit_is_signed_afresh_when_tried_again(
    simulator: SimulatorProcess, bucket: Any, logs: RecordingLog
) -> None:
    put(bucket)
    simulator.configure(faults=[{"on": "submit", "status": 429, "count": 1, "retry_after": "1"}])
    ctx, seen = task_context(), Deferrals()

    result = run_deferrable(operator(deferrable=True), ctx, seen)

    assert seen.triggers == ["Ltx2CapacityTrigger", "Ltx2VideoTrigger"] and result["reused"] is False
    refused, accepted = sent_image_urls(simulator)
    assert requests.get(accepted, timeout=10).content == JPEG
    for sent in (refused, accepted):
        assert_kept_nowhere(
            sent, result=result, xcom=ctx["ti"].xcom, trigger_kwargs=seen.kwargs, task_logs=logs.records
        )


@needs_av
def test_the_clip_is_made_of_the_private_image(simulator: SimulatorProcess, bucket: Any, tmp_path: Path) -> None:
    """The simulator renders from the signed URL: a solid teal PNG in the bucket makes a teal clip."""
    from tests.integration.simulator.test_render import decode, encode_image, mean_colour

    simulator.configure(render="always")
    encode_image(tmp_path / "teal.png", 64, 36, TEAL)
    image = put(bucket, "images/teal.png", (tmp_path / "teal.png").read_bytes())

    operator(image_url=image, resolution="720p", fps=24).execute(task_context())

    clip = decode(read(bucket, VIDEO_KEY))
    assert (clip["width"], clip["height"], len(clip["frames"])) == (1280, 720, 48)
    for frame in (clip["frames"][0], clip["frames"][-1]):
        assert all(abs(got - want) <= 20 for got, want in zip(mean_colour(frame), TEAL, strict=True))


def test_the_decorator_takes_a_private_image(simulator: SimulatorProcess, bucket: Any) -> None:
    image = put(bucket)
    op = decorated(lambda: {"image_url": image, "prompt": PROMPT, "duration": 2}, image_conn_id="ltx2_s3")

    result = op.execute(task_context())

    [sent] = sent_image_urls(simulator)
    assert requests.get(sent, timeout=10).content == JPEG
    assert result["request"]["image_url"] == image
    assert_kept_nowhere(sent, result=result)


def test_a_refused_submit_names_no_signed_url(simulator: SimulatorProcess, bucket: Any, logs: RecordingLog) -> None:
    put(bucket)
    simulator.configure(faults=[{"on": "submit", "status": 400}])
    ctx = task_context()

    with pytest.raises(Ltx2Error) as caught:
        operator().execute(ctx)

    [sent] = sent_image_urls(simulator)
    assert_kept_nowhere(sent, error=str(caught.value), xcom=ctx["ti"].xcom, task_logs=logs.records)


def test_a_store_that_cannot_sign_fails_before_paying(simulator: SimulatorProcess, tmp_path: Path) -> None:
    """A local file passes the image check, but the gateway could never fetch it."""
    image = tmp_path / "boat.jpg"
    image.write_bytes(JPEG)
    uri = f"file://{image}"
    ctx = task_context()

    with pytest.raises(Ltx2ValidationError) as caught:
        operator(image_url=uri, image_conn_id=None, output_uri=None).execute(ctx)

    message = str(caught.value)
    assert f"image_url={uri!r}" in message and "the gateway cannot read it" in message
    assert "copy local files there first" in message, "it says what to do"
    assert ctx["ti"].xcom["ltx2_failure"] == message
    assert simulator.stats()["submits"] == 0


@pytest.mark.parametrize("value", [59, 604801, 0, -3600, True, "3600", 3600.0])
def test_image_url_expires_in_is_whole_seconds_from_a_minute_to_a_week(
    simulator: SimulatorProcess, bucket: Any, value: Any
) -> None:
    put(bucket)
    with pytest.raises(Ltx2ValidationError) as caught:
        operator(image_url_expires_in=value).execute(task_context())
    assert f"image_url_expires_in={value!r}" in str(caught.value) and "604800" in str(caught.value)
    assert simulator.stats()["submits"] == 0


@pytest.mark.parametrize("seconds", [60, 604800])
def test_the_signed_url_lives_image_url_expires_in_seconds(
    simulator: SimulatorProcess, bucket: Any, seconds: int
) -> None:
    put(bucket)
    started = time.time()
    operator(image_url_expires_in=seconds, wait_for_completion=False, output_uri=None).execute(task_context())
    [sent] = sent_image_urls(simulator)
    assert started + seconds - 2 <= expires_at(sent) <= time.time() + seconds + 2


# ------------------------------------------------------------------------------------ the image check


def broken_image(case: str, bucket: Any, s3_endpoint: str, simulator: SimulatorProcess) -> str:
    """The ``image_url`` of each kind of image the check must refuse."""
    if case == "missing object":
        return f"s3://{S3_BUCKET}/images/missing.jpg"
    if case == "empty object":
        return put(bucket, "images/empty.jpg", b"")
    if case == "text named .png":
        return put(bucket, "images/notes.png", b"shot list: boat, coffee, lighthouse\n")
    if case == "http 404":
        return f"{simulator.base_url}/files/missing.png"
    if case == "http 403":  # a private object asked for without a signature
        put(bucket)
        return f"{s3_endpoint}/{S3_BUCKET}/{IMAGE_KEY}"
    assert case == "http, not an image"
    return f"{simulator.base_url}/_sim/config"


BROKEN = [
    ("missing object", "not found"),
    ("empty object", "empty"),
    ("text named .png", "not a JPEG or PNG"),
    ("http 404", "not found (HTTP 404)"),
    ("http 403", "HTTP 403"),
    ("http, not an image", "not a JPEG or PNG"),
]


@pytest.mark.parametrize(("case", "problem"), BROKEN, ids=[case for case, _ in BROKEN])
def test_a_broken_image_fails_before_paying(
    simulator: SimulatorProcess, bucket: Any, s3_endpoint: str, case: str, problem: str
) -> None:
    image = broken_image(case, bucket, s3_endpoint, simulator)
    ctx = task_context()

    with pytest.raises(Ltx2ValidationError) as caught:
        operator(image_url=image).execute(ctx)

    message = str(caught.value)
    assert "image_url" in message and repr(image) in message and problem in message, message
    assert ctx["ti"].xcom["ltx2_failure"] == message
    assert simulator.stats()["submits"] == 0
    assert not [key for key in bucket_keys(bucket) if not key.startswith("images/")], "nothing was written"


def test_a_missing_object_with_check_image_false_is_not_blamed_on_the_check(
    simulator: SimulatorProcess, bucket: Any
) -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        operator(image_url=f"s3://{S3_BUCKET}/images/missing.jpg", check_image=False).execute(task_context())
    assert "not found" in str(caught.value)
    assert "check_image=False" not in str(caught.value), "it must not advise what the task already does"


@pytest.mark.parametrize("case", ["text named .png", "http 404"])
def test_check_image_false_leaves_the_image_to_the_gateway(
    simulator: SimulatorProcess, bucket: Any, s3_endpoint: str, case: str
) -> None:
    image = broken_image(case, bucket, s3_endpoint, simulator)
    result = operator(image_url=image, check_image=False).execute(task_context())
    assert result["status"] == "succeeded" and simulator.stats()["submits"] == 1


@pytest.fixture
def image_host() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A public image host on loopback (the sample JPEG at ``/boat.jpg``) that notes each request's headers."""
    seen: list[dict[str, str]] = []

    class Host(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(JPEG)))
            self.end_headers()
            self.wfile.write(JPEG)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Host)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/boat.jpg", seen
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def s3_relay(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The ``ltx2_s3_relay`` connection: the same S3 through a loopback TCP relay that counts what S3 sends."""
    upstream = urlsplit(s3_endpoint)
    served = [0]
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    opened: list[socket.socket] = []

    def pipe(source: socket.socket, sink: socket.socket, counted: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(1 << 16):
                sink.sendall(chunk)
                served[0] += len(chunk) if counted else 0
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def relay() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            store = socket.create_connection((str(upstream.hostname), int(upstream.port or 80)))
            opened.extend((client, store))
            threading.Thread(target=pipe, args=(client, store, False), daemon=True).start()
            threading.Thread(target=pipe, args=(store, client, True), daemon=True).start()

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    connection = json.loads(os.environ["AIRFLOW_CONN_LTX2_S3"])
    connection["extra"]["endpoint_url"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("AIRFLOW_CONN_LTX2_S3_RELAY", json.dumps(connection))
    yield served
    stop.set()
    thread.join(5)
    listener.close()
    for each in opened:
        each.close()


def test_the_check_reads_only_the_first_bytes_of_a_private_image(
    simulator: SimulatorProcess, bucket: Any, s3_relay: list[int]
) -> None:
    image = put(bucket, "images/large.jpg", JPEG[:3] + bytes(8 << 20))  # 8 MiB, a JPEG by its first bytes
    operator(image_url=image, image_conn_id="ltx2_s3_relay", output_uri=None, wait_for_completion=False).execute(
        task_context()
    )
    assert simulator.stats()["submits"] == 1
    assert 0 < s3_relay[0] < 64 << 10, f"S3 sent {s3_relay[0]} bytes to check the image's first bytes"


def test_the_check_reads_only_the_first_bytes_of_a_public_image_without_the_key(
    simulator: SimulatorProcess, image_host: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = image_host
    operator(image_url=url, output_uri=None, wait_for_completion=False).execute(task_context())
    [headers] = seen
    assert headers.get("Range") == f"bytes=0-{storage.HEAD_BYTES - 1}"
    assert KEY not in json.dumps(headers), "the subscription key goes to the gateway only"
    assert sent_image_urls(simulator) == [url], "a public URL is sent as it is"


# ------------------------------------------------------------------------------------ reuse and the sidecar


@pytest.mark.parametrize("store", ["s3", "file"])
def test_a_rerun_with_the_same_output_uri_pays_nothing(
    simulator: SimulatorProcess, bucket: Any, tmp_path: Path, logs: RecordingLog, store: str
) -> None:
    if store == "s3":
        arguments = {"image_url": put(bucket)}
    else:
        image = f"{simulator.base_url}/files/sample.jpg"
        arguments = {"image_url": image, "output_uri": f"file://{tmp_path}/boat.mp4", "output_conn_id": None}
    first = operator(**arguments).execute(task_context())
    before = simulator.stats()

    second = operator(**arguments).execute(task_context())

    after = simulator.stats()
    calls = ("submits", "polls", "downloads", "jobs")
    assert [after[name] for name in calls] == [before[name] for name in calls], "no gateway call at all"
    assert (first["reused"], second["reused"]) == (False, True)
    assert {**second, "reused": False} == first, "the result dict is read back from the sidecar"
    [line] = [line for line in logs.messages("info") if "no charge" in line]
    assert first["request_id"] in line and first["output_uri"] in line and line.startswith("Reused")


def replace_image(bucket: Any) -> dict[str, Any]:
    put(bucket, body=JPEG[:-1] + bytes([JPEG[-1] ^ 1]))  # other bytes, same size and key
    return {}


def another_image(bucket: Any) -> dict[str, Any]:
    return {"image_url": put(bucket, "images/boat-copy.jpg")}


def delete_sidecar(bucket: Any) -> dict[str, Any]:
    bucket.delete_object(Bucket=S3_BUCKET, Key=SIDECAR_KEY)
    return {}


def damage_sidecar(bucket: Any) -> dict[str, Any]:
    put(bucket, SIDECAR_KEY, read(bucket, SIDECAR_KEY)[:40])
    return {}


def sidecar_of_another_request(bucket: Any) -> dict[str, Any]:
    saved = json.loads(read(bucket, SIDECAR_KEY))
    put(bucket, SIDECAR_KEY, json.dumps({**saved, "fingerprint": "0" * 64}).encode())
    return {}


def edit_video(bucket: Any) -> dict[str, Any]:
    video = read(bucket, VIDEO_KEY)
    put(bucket, VIDEO_KEY, video[:-1] + bytes([video[-1] ^ 1]))  # same size, other content
    return {}


def cut_video_short(bucket: Any) -> dict[str, Any]:
    put(bucket, VIDEO_KEY, read(bucket, VIDEO_KEY)[:1000])
    return {}


def delete_video(bucket: Any) -> dict[str, Any]:
    bucket.delete_object(Bucket=S3_BUCKET, Key=VIDEO_KEY)
    return {}


CHANGES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "prompt": lambda _: {"prompt": PROMPT + ", at dusk"},
    "parameter": lambda _: {"duration": 3},
    "image replaced": replace_image,
    "other image": another_image,
    "sidecar missing": delete_sidecar,
    "sidecar damaged": damage_sidecar,
    "sidecar of another request": sidecar_of_another_request,
    "video edited": edit_video,
    "video cut short": cut_video_short,
    "video missing": delete_video,
}


@pytest.mark.slow
@pytest.mark.parametrize("change", list(CHANGES))
def test_anything_else_is_generated_anew(simulator: SimulatorProcess, bucket: Any, change: str) -> None:
    put(bucket)
    first = operator().execute(task_context())

    second = operator(**CHANGES[change](bucket)).execute(task_context())

    assert second["reused"] is False and second["request_id"] != first["request_id"]
    assert simulator.stats()["submits"] == 2
    saved = json.loads(read(bucket, SIDECAR_KEY))
    assert (saved["request_id"], saved["request"]) == (second["request_id"], second["request"])
    assert saved["sha256"] == hashlib.sha256(read(bucket, VIDEO_KEY)).hexdigest(), "the new sidecar fits the MP4"


def test_reuse_existing_false_asks_for_a_fresh_take(simulator: SimulatorProcess, bucket: Any) -> None:
    put(bucket)
    first = operator().execute(task_context())
    second = operator(reuse_existing=False).execute(task_context())
    assert second["reused"] is False and second["request_id"] != first["request_id"]
    assert simulator.stats()["submits"] == 2
    assert json.loads(read(bucket, SIDECAR_KEY))["request_id"] == second["request_id"]


def test_the_sidecar_is_the_videos_catalogue_entry(simulator: SimulatorProcess, bucket: Any) -> None:
    image = put(bucket)
    result = operator(fps=24).execute(task_context())

    assert bucket_keys(bucket) == [IMAGE_KEY, VIDEO_KEY, SIDECAR_KEY], "nothing else is left (no .part)"
    video, saved = read(bucket, VIDEO_KEY), json.loads(read(bucket, SIDECAR_KEY))
    assert set(saved) == SIDECAR_FIELDS
    assert saved["request"] == result["request"] == {"image_url": image, "prompt": PROMPT, "duration": 2, "fps": 24}
    identity = storage.image_input(image, "ltx2_s3", defaults.IMAGE_URL_EXPIRES_IN)
    assert saved["fingerprint"] == storage.fingerprint(result["request"], identity)
    for name in ("request_id", "video_url", "output_uri", "bytes", "submitted_at", "completed_at"):
        assert saved[name] == result[name], name
    assert saved["output_uri"] == VIDEO and saved["bytes"] == len(video)
    assert saved["sha256"] == hashlib.sha256(video).hexdigest()
    assert datetime.fromisoformat(saved["submitted_at"]) <= datetime.fromisoformat(saved["completed_at"])
    assert saved["price_usd"] == PRICE_PER_VIDEO_USD and saved["version"] == storage.SIDECAR_VERSION


def test_a_failed_download_leaves_the_earlier_video_and_its_sidecar_as_they_were(
    simulator: SimulatorProcess, bucket: Any
) -> None:
    put(bucket)
    operator().execute(task_context())
    before = {key: read(bucket, key) for key in (VIDEO_KEY, SIDECAR_KEY)}
    simulator.configure(faults=[{"on": "download", "status": 503, "count": 5}])

    with pytest.raises(Ltx2Error):
        operator(prompt=PROMPT + ", at dusk").execute(task_context())

    assert bucket_keys(bucket) == [IMAGE_KEY, VIDEO_KEY, SIDECAR_KEY], "no .part, no sidecar of the failed video"
    assert {key: read(bucket, key) for key in before} == before
    assert operator().execute(task_context())["reused"] is True, "the earlier video is still whole and reused"
    assert simulator.stats()["submits"] == 2


def test_a_failed_first_download_leaves_no_sidecar(simulator: SimulatorProcess, bucket: Any) -> None:
    put(bucket)
    simulator.configure(faults=[{"on": "download", "status": 200, "body": "html", "count": 5}])
    with pytest.raises(Ltx2Error, match="not an MP4"):
        operator().execute(task_context())
    assert bucket_keys(bucket) == [IMAGE_KEY]


def test_a_sidecar_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    """A write that fails half-way (here: a value JSON cannot hold) leaves the earlier sidecar untouched."""
    output = f"file://{tmp_path}/v.mp4"
    storage.write_sidecar(output, None, {"request_id": "first"})

    with pytest.raises(TypeError):
        storage.write_sidecar(output, None, {"request_id": "second", "unwritable": object()})

    assert [path.name for path in tmp_path.iterdir()] == ["v.mp4.json"], "no temporary file is left"
    assert json.loads((tmp_path / "v.mp4.json").read_text()) == {"request_id": "first"}


def test_asset_events_say_whether_the_video_was_reused(simulator: SimulatorProcess, bucket: Any) -> None:
    from airflow.providers.common.compat.sdk import Asset

    put(bucket)
    asset = Asset(VIDEO)
    extras = []
    for _ in range(2):
        events = outlet_events()
        operator(outlets=[asset]).execute(task_context(outlet_events=events))
        extras.append(dict(events[asset].extra))

    assert [extra["reused"] for extra in extras] == [False, True]
    assert {**extras[1], "reused": False} == extras[0] and extras[0]["output_uri"] == VIDEO
    assert simulator.stats()["submits"] == 1


def test_a_video_moved_with_its_sidecar_is_reused_where_it_is_now(simulator: SimulatorProcess, bucket: Any) -> None:
    put(bucket)
    operator().execute(task_context())
    for key in (VIDEO_KEY, SIDECAR_KEY):  # e.g. a bucket copied to another prefix, then the old one dropped
        bucket.copy_object(Bucket=S3_BUCKET, Key=f"archive/{key}", CopySource={"Bucket": S3_BUCKET, "Key": key})
        bucket.delete_object(Bucket=S3_BUCKET, Key=key)
    moved = f"s3://{S3_BUCKET}/archive/{VIDEO_KEY}"

    result = operator(output_uri=moved).execute(task_context())

    assert result["reused"] is True and simulator.stats()["submits"] == 1
    assert result["output_uri"] == moved, "downstream tasks must find the video where the task says it is"
