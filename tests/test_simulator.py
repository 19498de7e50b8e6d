"""End-to-end tests of the LTX-2 gateway simulator, run as a real subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.simulator.server import free_box_header

REPO = Path(__file__).resolve().parents[1]
SAMPLE = (REPO / "airflow_provider_ltx2" / "simulator" / "sample.mp4").read_bytes()
KEY = "test-key"
SUBMIT = "/ltx-2-video-api-581/v1/ltx-2-video-api-request"
RESULT = "/ltx-2-video-api-581/v1/ltx-2-video-api-request-result"
FAST = {"queue_seconds": 0.15, "processing_seconds": 0.15}
VALID = {"image_url": "https://example.com/cat.jpg", "prompt": "the cat turns its head"}


# --- harness ------------------------------------------------------------------------------------------


class Sim(SimulatorProcess):
    """A started simulator subprocess; ``base`` is the URL from its listening line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(*args, key=None, env=env)
        self.start()

    @property
    def base(self) -> str:
        return self.base_url

    def config(self, **values: Any) -> dict[str, Any]:
        return self.configure(**values)

    def submit(self, body: Any = None, key: str | None = KEY, **kwargs: Any) -> requests.Response:
        headers = {"Ocp-Apim-Subscription-Key": key} if key is not None else {}
        headers.update(kwargs.pop("headers", {}))
        payload = VALID if body is None else body
        return requests.post(f"{self.base}{SUBMIT}", json=payload, headers=headers, timeout=5, **kwargs)

    def poll(self, request_id: str, key: str | None = KEY) -> requests.Response:
        headers = {"Ocp-Apim-Subscription-Key": key} if key is not None else {}
        return requests.post(f"{self.base}{RESULT}", json={"request_id": request_id}, headers=headers, timeout=5)

    def status(self, request_id: str, key: str | None = KEY) -> requests.Response:
        headers = {"Ocp-Apim-Subscription-Key": key} if key is not None else {}
        return requests.get(f"{self.base}/v2/requests/status/{request_id}", headers=headers, timeout=5)


@pytest.fixture(scope="module")
def server() -> Iterator[Sim]:
    sim = Sim("--key", KEY)
    yield sim
    sim.stop()
    assert sim.errors() == "", "the simulator logged errors"


@pytest.fixture
def sim(server: Sim) -> Sim:
    assert requests.post(f"{server.base}/_sim/reset", timeout=5).status_code == 200
    server.config(**FAST)
    return server


def wait_for(fetch: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        reply = fetch()
        if done(reply) or time.monotonic() > deadline:
            return reply
        time.sleep(0.03)


def top_level_boxes(data: bytes) -> list[tuple[bytes, int]]:
    """Walk an MP4's top-level boxes; each must end inside the file and the last exactly at its end."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        assert size >= 8 and offset + size <= len(data), (kind, size)
        boxes.append((kind, size))
        offset += size
    return boxes


# --- protocols end to end -----------------------------------------------------------------------------


def test_legacy_end_to_end(sim: Sim) -> None:
    reply = sim.submit(dict(VALID, duration=6, resolution="1080p", aspect_ratio="9:16", fps=25))
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "IN_QUEUE" and body["request_id"].startswith("ltx2-v-")
    assert body["message"] == "Video generation request queued successfully."
    request_id = body["request_id"]

    assert sim.poll(request_id).json() == {"status": "IN_QUEUE", "queue_position": 1}
    running = wait_for(lambda: sim.poll(request_id).json(), lambda r: r.get("status") != "IN_QUEUE")
    assert running["status"] == "IN_PROGRESS" and isinstance(running["logs"], list) and running["logs"]
    done = wait_for(lambda: sim.poll(request_id).json(), lambda r: "status" not in r)
    assert set(done) == {"video"}, "a finished legacy result carries no status field"
    video = done["video"]
    assert video["url"] == f"{sim.base}/files/{request_id}.mp4"
    assert (video["content_type"], video["file_name"], video["file_size"]) == (
        "video/mp4",
        "output.mp4",
        len(SAMPLE),
    )

    download = requests.get(video["url"], timeout=5)  # no key: the CDN is public
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "video/mp4"
    assert int(download.headers["Content-Length"]) == len(download.content) == video["file_size"]
    assert download.content[4:8] == b"ftyp" and download.content == SAMPLE
    # A legacy id is unknown to the universal status endpoint.
    assert sim.status(request_id).status_code == 404


def test_universal_end_to_end(sim: Sim) -> None:
    sim.config(protocol="universal")
    reply = sim.submit()
    assert reply.status_code == 202
    body = reply.json()
    request_id = body["request_id"]
    assert request_id.startswith("ltx-2-video-api-581_") and body["status"] == "QUEUED"
    assert body["polling_url"] == f"{sim.base}/v2/requests/status/{request_id}"

    def fetch() -> dict[str, Any]:
        answer = requests.get(body["polling_url"], headers={"Ocp-Apim-Subscription-Key": KEY}, timeout=5)
        assert answer.status_code == 200
        return dict(answer.json())

    queued = fetch()
    assert queued["status"] == "QUEUED" and queued["output"] is None and queued["completed_at"] is None
    assert queued["model_id"] == "ltx-2-video-api-581" and queued["request_id"] == request_id
    assert queued["error"] is None
    processing = wait_for(fetch, lambda r: r["status"] != "QUEUED")
    assert processing["status"] == "PROCESSING" and processing["output"] is None
    done = wait_for(fetch, lambda r: r["status"] != "PROCESSING")
    assert done["status"] == "COMPLETED" and done["error"] is None
    assert done["output"] == {
        "media_url": [f"{sim.base}/files/{request_id}.mp4"],
        "media_type": "application/octet-stream",
    }
    created, completed = (datetime.fromisoformat(done[k]) for k in ("created_at", "completed_at"))
    assert created.utcoffset() is not None and 0.2 <= (completed - created).total_seconds() < 1
    assert datetime.fromisoformat(done["updated_at"]) == completed

    download = requests.get(done["output"]["media_url"][0], timeout=5)
    assert download.status_code == 200 and download.content[4:8] == b"ftyp"
    # A universal id is unknown to the legacy result call.
    assert sim.poll(request_id).status_code == 404


def test_polling_url_follows_the_host_the_client_used(sim: Sim) -> None:
    sim.config(protocol="universal")
    reply = sim.submit(headers={"Host": "gateway.test:1234"})
    assert reply.json()["polling_url"].startswith("http://gateway.test:1234/v2/requests/status/")


def test_unknown_request_and_unfinished_download_are_404(sim: Sim) -> None:
    assert sim.poll("ltx2-v-nope").status_code == 404
    assert sim.poll("ltx2-v-nope").json() == {"error": "Request not found"}
    assert sim.status("ltx-2-video-api-581_nope").json() == {"error": "Request not found"}
    request_id = sim.submit().json()["request_id"]
    assert requests.get(f"{sim.base}/files/{request_id}.mp4", timeout=5).status_code == 404
    assert requests.get(f"{sim.base}/files/ltx2-v-nope.mp4", timeout=5).status_code == 404
    bad_poll = requests.post(f"{sim.base}{RESULT}", json={}, headers={"Ocp-Apim-Subscription-Key": KEY})
    assert bad_poll.status_code == 400 and "request_id" in bad_poll.json()["error"]


def test_sample_jpeg_is_served(sim: Sim) -> None:
    reply = requests.get(f"{sim.base}/files/sample.jpg", timeout=5)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "image/jpeg"
    assert reply.content[:2] == b"\xff\xd8"


# --- auth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "word"), [(None, "missing"), ("wrong-key", "invalid")])
def test_bad_key_is_401_in_apim_shape(sim: Sim, key: str | None, word: str) -> None:
    request_id = sim.submit().json()["request_id"]
    for reply in (sim.submit(key=key), sim.poll(request_id, key=key), sim.status(request_id, key=key)):
        assert reply.status_code == 401
        body = reply.json()
        assert body["statusCode"] == 401
        assert body["message"].startswith(f"Access denied due to {word} subscription key")
    stats = sim.stats()
    assert (stats["keys_seen_ok"], stats["keys_seen_bad"], stats["jobs"]) == (1, 3, 1)


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"image_url": None}, "image_url"),
        ({"image_url": 42}, "image_url"),
        ({"image_url": "ftp://example.com/a.jpg"}, "image_url"),
        ({"image_url": "https://"}, "image_url"),
        ({"image_url": "cat.jpg"}, "image_url"),
        ({"prompt": None}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": 7}, "prompt"),
        ({"duration": 1}, "duration"),
        ({"duration": 11}, "duration"),
        ({"duration": 6.0}, "duration"),
        ({"duration": True}, "duration"),
        ({"duration": "6"}, "duration"),
        ({"resolution": "1440p"}, "resolution"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"fps": 50}, "fps"),
        ({"fps": 24.0}, "fps"),
        ({"generate_audio": "true"}, "generate_audio"),
        ({"generate_audio": 1}, "generate_audio"),
        ({"seed": 3}, "seed"),
    ],
)
def test_invalid_submit_is_400_naming_the_field(sim: Sim, changes: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**VALID, **changes}.items() if v is not None}
    reply = sim.submit(body)
    assert reply.status_code == 400
    answer = reply.json()
    assert answer["error"].startswith(f"Invalid {field}: ") and answer["message"]
    assert sim.stats()["jobs"] == 0


@pytest.mark.parametrize("raw", ["[1, 2]", "not json", '"a string"'])
def test_non_object_body_is_400(sim: Sim, raw: str) -> None:
    reply = requests.post(
        f"{sim.base}{SUBMIT}",
        data=raw,
        headers={"Ocp-Apim-Subscription-Key": KEY, "Content-Type": "application/json"},
        timeout=5,
    )
    assert reply.status_code == 400 and reply.json()["error"]
    assert sim.stats()["jobs"] == 0


def test_every_valid_option_is_accepted(sim: Sim) -> None:
    for duration in (2, 10):
        for resolution, ratio, fps in [("720p", "16:9", 24), ("2160p", "1:1", 30)]:
            full = dict(VALID, duration=duration, resolution=resolution, aspect_ratio=ratio, fps=fps)
            assert sim.submit(dict(full, generate_audio=duration == 2)).status_code == 200
    assert sim.submit(dict(VALID, image_url="http://10.0.0.1:8080/x.png")).status_code == 200
    assert sim.stats()["jobs"] == 5


# --- faults -----------------------------------------------------------------------------------------


def test_fault_status_retry_after_and_count(sim: Sim) -> None:
    sim.config(faults=[{"on": "submit", "status": 429, "count": 2, "retry_after": "7"}])
    for _ in range(2):
        reply = sim.submit()
        assert reply.status_code == 429 and reply.headers["Retry-After"] == "7"
        assert reply.json() == {"error": "Too Many Requests", "message": "simulated fault"}
    assert sim.stats()["jobs"] == 0, "a faulted submit creates no job"
    assert sim.submit().status_code == 200
    stats = sim.stats()
    assert (stats["submits"], stats["jobs"]) == (3, 1)
    assert sim.config()["faults"] == []


def test_fault_targets_only_its_endpoint_and_http_date_is_verbatim(sim: Sim) -> None:
    date = "Wed, 21 Oct 2037 07:28:00 GMT"
    sim.config(faults=[{"on": "poll", "status": 503, "retry_after": date}])
    request_id = sim.submit().json()["request_id"]  # not a poll: unaffected
    reply = sim.poll(request_id)
    assert reply.status_code == 503 and reply.headers["Retry-After"] == date
    assert sim.poll(request_id).status_code == 200


def test_fault_html_body(sim: Sim) -> None:
    sim.config(faults=[{"on": "any", "status": 502, "body": "html"}])
    reply = sim.status("whatever")
    assert reply.status_code == 502 and reply.headers["Content-Type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in reply.text


def test_fault_malformed_and_empty_bodies(sim: Sim) -> None:
    sim.config(
        faults=[{"on": "poll", "status": 200, "body": "malformed"}, {"on": "poll", "status": 500, "body": "empty"}]
    )
    request_id = sim.submit().json()["request_id"]
    malformed = sim.poll(request_id)
    assert malformed.status_code == 200 and malformed.headers["Content-Type"].startswith("application/json")
    assert malformed.text == '{"error": '
    with pytest.raises(ValueError):
        malformed.json()
    empty = sim.poll(request_id)
    assert empty.status_code == 500 and empty.content == b""
    assert sim.poll(request_id).status_code == 200


def test_fault_drop_connection(sim: Sim) -> None:
    sim.config(faults=[{"on": "submit", "drop_connection": True, "count": 2}])
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            sim.submit()
    assert sim.stats()["jobs"] == 0
    assert sim.submit().status_code == 200
    assert sim.stats()["submits"] == 3


def test_fault_on_download(sim: Sim) -> None:
    request_id = sim.submit().json()["request_id"]
    url = wait_for(lambda: sim.poll(request_id).json(), lambda r: "video" in r)["video"]["url"]
    sim.config(faults=[{"on": "download", "status": 503, "retry_after": "1"}])
    assert sim.poll(request_id).status_code == 200
    first = requests.get(url, timeout=5)
    assert first.status_code == 503 and first.headers["Retry-After"] == "1"
    assert requests.get(url, timeout=5).content == SAMPLE


def test_response_delay_slows_api_calls(sim: Sim) -> None:
    sim.config(response_delay_seconds=0.3)
    started = time.monotonic()
    assert sim.poll("ltx2-v-nope").status_code == 404
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.Timeout):
        requests.post(f"{sim.base}{SUBMIT}", json=VALID, headers={"Ocp-Apim-Subscription-Key": KEY}, timeout=0.1)


# --- outcomes ---------------------------------------------------------------------------------------

OUTCOMES = [
    ("fail", {"status": "FAILED", "error": "Content generation failed: simulated failure"}, "FAILED"),
    ("error", {"status": "FAILED", "error": "Internal system error (not charged)"}, "ERROR"),
    ("never_finish", None, "PROCESSING"),
    ("unknown_status", {"status": "WIBBLING"}, "WIBBLING"),
]


@pytest.mark.parametrize(("outcome", "legacy", "universal"), OUTCOMES)
def test_outcomes(sim: Sim, outcome: str, legacy: dict[str, Any] | None, universal: str) -> None:
    sim.config(outcome=outcome, queue_seconds=0.05, processing_seconds=0.05)
    legacy_id = sim.submit().json()["request_id"]
    sim.config(protocol="universal")
    universal_id = sim.submit().json()["request_id"]
    time.sleep(0.3)

    legacy_reply = sim.poll(legacy_id).json()
    if legacy is None:
        assert legacy_reply["status"] == "IN_PROGRESS"
    else:
        assert legacy_reply == legacy
    status = sim.status(universal_id).json()
    assert status["status"] == universal and status["output"] is None
    if universal in ("FAILED", "ERROR"):
        assert status["error"] == legacy_reply["error"] and status["completed_at"]
    else:
        assert status["error"] is None and status["completed_at"] is None
    assert requests.get(f"{sim.base}/files/{legacy_id}.mp4", timeout=5).status_code == 404


# --- counters, config and reset ---------------------------------------------------------------------


def test_stats_count_everything_received(sim: Sim) -> None:
    sim.config(faults=[{"on": "poll", "status": 500}])
    request_id = sim.submit(dict(VALID, duration=4)).json()["request_id"]
    sim.submit(key="nope")
    sim.poll(request_id)  # faulted, still counted
    sim.poll(request_id)
    requests.get(f"{sim.base}/files/{request_id}.mp4", timeout=5)
    stats = sim.stats()
    assert (stats["submits"], stats["polls"], stats["downloads"], stats["jobs"]) == (2, 2, 1, 1)
    assert stats["keys_seen_ok"] == 3 and stats["keys_seen_bad"] == 1
    assert stats["requests"] == [dict(VALID, duration=4), VALID]

    with requests.Session() as session:
        for i in range(105):
            session.post(f"{sim.base}{SUBMIT}", json={"prompt": str(i)}, timeout=5)
    recorded = sim.stats()["requests"]
    assert len(recorded) == 100 and recorded[-1] == {"prompt": "104"}


def test_config_validation_and_reset(sim: Sim) -> None:
    bad = [
        {"protocol": "soap"},
        {"queue_seconds": -1},
        {"queue_seconds": "1"},
        {"outcome": "maybe"},
        {"video_padding_bytes": 4},
        {"faults": [{"on": "everything", "status": 500}]},
        {"faults": [{"status": 99}]},
        {"faults": [{"status": 500, "count": 0}]},
        {"faults": [{"status": 500, "colour": "red"}]},
        {"bogus": 1},
    ]
    for values in bad:
        reply = requests.post(f"{sim.base}/_sim/config", json=values, timeout=5)
        assert reply.status_code == 400 and reply.json()["error"], values
    changed = sim.config(outcome="fail", faults=[{"status": 500}])
    assert changed["outcome"] == "fail" and changed["faults"][0]["on"] == "any"
    sim.submit(key=None)
    reset = requests.post(f"{sim.base}/_sim/reset", timeout=5).json()
    assert reset["outcome"] == "succeed" and reset["faults"] == [] and reset["queue_seconds"] == 1.0
    assert sim.stats() == {
        "submits": 0,
        "polls": 0,
        "downloads": 0,
        "keys_seen_ok": 0,
        "keys_seen_bad": 0,
        "jobs": 0,
        "requests": [],
    }


# --- padding ----------------------------------------------------------------------------------------


def test_padding_is_a_valid_free_box_with_exact_length(sim: Sim) -> None:
    padding = 3 * (1 << 20) + 12345
    sim.config(video_padding_bytes=padding)
    request_id = sim.submit().json()["request_id"]
    video = wait_for(lambda: sim.poll(request_id).json(), lambda r: "video" in r)["video"]
    assert video["file_size"] == len(SAMPLE) + padding

    with requests.get(video["url"], stream=True, timeout=5) as reply:
        assert int(reply.headers["Content-Length"]) == video["file_size"]
        data = b"".join(reply.iter_content(1 << 16))
    assert len(data) == video["file_size"]
    assert data.startswith(SAMPLE)
    boxes = top_level_boxes(data)
    assert boxes[0][0] == b"ftyp" and boxes[-1] == (b"free", padding)
    assert data[len(SAMPLE) + 8 :].count(0) == padding - 8


def test_client_hanging_up_mid_download_is_quiet(sim: Sim) -> None:
    sim.config(video_padding_bytes=256 << 20)
    request_id = sim.submit().json()["request_id"]
    url = wait_for(lambda: sim.poll(request_id).json(), lambda r: "video" in r)["video"]["url"]
    with requests.get(url, stream=True, timeout=5) as reply:
        assert next(reply.iter_content(1 << 16))[4:8] == b"ftyp"
    time.sleep(0.2)
    assert sim.poll(request_id).status_code == 200
    assert "Traceback" not in sim.errors()


def test_free_box_header_uses_largesize_beyond_32_bits() -> None:
    assert free_box_header(1 << 30) == struct.pack(">I4s", 1 << 30, b"free")
    assert free_box_header(0xFFFFFFFF) == struct.pack(">I4s", 0xFFFFFFFF, b"free")
    big = (5 << 30) + 3
    assert free_box_header(big) == struct.pack(">I4sQ", 1, b"free", big)


# --- CLI and state file -----------------------------------------------------------------------------


def test_state_file_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "jobs.json"
    env = dict(os.environ, LTX2_SIMULATOR_KEY="env-key")
    args = ("--state-file", str(state), "--protocol", "universal", "--queue-seconds", "0.3")
    first = Sim(*args, "--processing-seconds", "0.3", env=env)
    try:
        reply = requests.post(
            f"{first.base}{SUBMIT}", json=VALID, headers={"Ocp-Apim-Subscription-Key": "env-key"}, timeout=5
        )
        assert reply.status_code == 202, "the key comes from LTX2_SIMULATOR_KEY, the protocol from --protocol"
        request_id = reply.json()["request_id"]
    finally:
        first.stop()
    saved = json.loads(state.read_text())["jobs"]
    assert [job["request_id"] for job in saved] == [request_id] and saved[0]["params"] == VALID

    second = Sim(*args, env=env)
    try:
        assert second.stats()["jobs"] == 1
        headers = {"Ocp-Apim-Subscription-Key": "env-key"}
        url = f"{second.base}/v2/requests/status/{request_id}"
        done = wait_for(lambda: requests.get(url, headers=headers, timeout=5).json(), lambda r: r["output"])
        assert done["status"] == "COMPLETED"
        media = done["output"]["media_url"][0]
        assert media.startswith(second.base) and requests.get(media, timeout=5).content == SAMPLE
    finally:
        second.stop()
