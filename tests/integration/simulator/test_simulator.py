"""End-to-end tests of the LTX-2 gateway simulator, run as a real subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_ltx2.simulator.__main__ import main as simulator_main
from airflow_provider_ltx2.simulator.limits import (
    NEVER_FREES_SECONDS,
    RateWindow,
    concurrency_wait,
    slot_utilisation,
)
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from airflow_provider_ltx2.simulator.server import free_box_header
from tests.conftest import TlsFiles

REPO = Path(__file__).resolve().parents[3]
SAMPLE = (REPO / "airflow_provider_ltx2" / "simulator" / "sample.mp4").read_bytes()
SUBMIT = "/ltx-2-video-api-581/v1/ltx-2-video-api-request"
RESULT = "/ltx-2-video-api-581/v1/ltx-2-video-api-request-result"
FAST = {"queue_seconds": 0.15, "processing_seconds": 0.15}
VALID = {"image_url": "https://example.com/cat.jpg", "prompt": "the cat turns its head"}
OWN_KEY = "<the simulator's own key>"
NO_CALLS = {"submit": 0, "poll": 0}


# --- harness ------------------------------------------------------------------------------------------


class Gateway:
    """The gateway calls of a started simulator, sent with its own key unless told another (None: no key)."""

    def __init__(self, process: SimulatorProcess, verify: str | bool = True) -> None:
        self.process = process
        self.base = process.base_url
        self.key = process.key
        self.verify = verify

    def config(self, **values: Any) -> dict[str, Any]:
        return self.process.configure(**values)

    def stats(self) -> dict[str, Any]:
        return self.process.stats()

    def errors(self) -> str:
        return self.process.errors()

    def headers(self, key: str | None) -> dict[str, str]:
        key = self.key if key == OWN_KEY else key
        return {"Ocp-Apim-Subscription-Key": key} if key is not None else {}

    def submit(self, body: Any = None, key: str | None = OWN_KEY, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(key), **kwargs.pop("headers", {})}
        payload = VALID if body is None else body
        url = f"{self.base}{SUBMIT}"
        return requests.post(url, json=payload, headers=headers, timeout=5, verify=self.verify, **kwargs)

    def poll(self, request_id: str, key: str | None = OWN_KEY) -> requests.Response:
        body = {"request_id": request_id}
        url = f"{self.base}{RESULT}"
        return requests.post(url, json=body, headers=self.headers(key), timeout=5, verify=self.verify)

    def status(self, request_id: str, key: str | None = OWN_KEY) -> requests.Response:
        url = f"{self.base}/v2/requests/status/{request_id}"
        return requests.get(url, headers=self.headers(key), timeout=5, verify=self.verify)


@contextmanager
def started(*args: str, **kwargs: Any) -> Iterator[Gateway]:
    """A simulator of its own, started with these command-line ``args``, stopped by pid at the end."""
    with SimulatorProcess(*args, **kwargs) as process:
        yield Gateway(process)


@pytest.fixture(scope="module", autouse=True)
def _quiet(simulator_process: SimulatorProcess) -> Iterator[None]:
    """The shared simulator writes nothing to stderr while these tests run (it only does on errors)."""
    before = len(simulator_process.errors())
    yield
    assert simulator_process.errors()[before:] == "", "the simulator logged errors"


@pytest.fixture
def sim(simulator: SimulatorProcess) -> Gateway:
    """The shared simulator, reset, with jobs faster still."""
    simulator.configure(**FAST)
    return Gateway(simulator)


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


def test_legacy_end_to_end(sim: Gateway) -> None:
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


def test_universal_end_to_end(sim: Gateway) -> None:
    sim.config(protocol="universal")
    reply = sim.submit()
    assert reply.status_code == 202
    body = reply.json()
    request_id = body["request_id"]
    assert request_id.startswith("ltx-2-video-api-581_") and body["status"] == "QUEUED"
    assert body["polling_url"] == f"{sim.base}/v2/requests/status/{request_id}"

    def fetch() -> dict[str, Any]:
        answer = requests.get(body["polling_url"], headers=sim.headers(OWN_KEY), timeout=5)
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


def test_polling_url_follows_the_host_the_client_used(sim: Gateway) -> None:
    sim.config(protocol="universal")
    reply = sim.submit(headers={"Host": "gateway.test:1234"})
    assert reply.json()["polling_url"].startswith("http://gateway.test:1234/v2/requests/status/")


def test_unknown_request_and_unfinished_download_are_404(sim: Gateway) -> None:
    assert sim.poll("ltx2-v-nope").status_code == 404
    assert sim.poll("ltx2-v-nope").json() == {"error": "Request not found"}
    assert sim.status("ltx-2-video-api-581_nope").json() == {"error": "Request not found"}
    request_id = sim.submit().json()["request_id"]
    assert requests.get(f"{sim.base}/files/{request_id}.mp4", timeout=5).status_code == 404
    assert requests.get(f"{sim.base}/files/ltx2-v-nope.mp4", timeout=5).status_code == 404
    bad_poll = requests.post(f"{sim.base}{RESULT}", json={}, headers=sim.headers(OWN_KEY), timeout=5)
    assert bad_poll.status_code == 400 and "request_id" in bad_poll.json()["error"]


def test_sample_jpeg_is_served(sim: Gateway) -> None:
    reply = requests.get(f"{sim.base}/files/sample.jpg", timeout=5)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "image/jpeg"
    assert reply.content[:2] == b"\xff\xd8"


# --- auth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "word"), [(None, "missing"), ("wrong-key", "invalid")])
def test_bad_key_is_401_in_apim_shape(sim: Gateway, key: str | None, word: str) -> None:
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
def test_invalid_submit_is_400_naming_the_field(sim: Gateway, changes: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**VALID, **changes}.items() if v is not None}
    reply = sim.submit(body)
    assert reply.status_code == 400
    answer = reply.json()
    assert answer["error"].startswith(f"Invalid {field}: ") and answer["message"]
    assert sim.stats()["jobs"] == 0


@pytest.mark.parametrize("raw", ["[1, 2]", "not json", '"a string"'])
def test_non_object_body_is_400(sim: Gateway, raw: str) -> None:
    reply = requests.post(
        f"{sim.base}{SUBMIT}",
        data=raw,
        headers={**sim.headers(OWN_KEY), "Content-Type": "application/json"},
        timeout=5,
    )
    assert reply.status_code == 400 and reply.json()["error"]
    assert sim.stats()["jobs"] == 0


def test_every_valid_option_is_accepted(sim: Gateway) -> None:
    for duration in (2, 10):
        for resolution, ratio, fps in [("720p", "16:9", 24), ("2160p", "1:1", 30)]:
            full = dict(VALID, duration=duration, resolution=resolution, aspect_ratio=ratio, fps=fps)
            assert sim.submit(dict(full, generate_audio=duration == 2)).status_code == 200
    assert sim.submit(dict(VALID, image_url="http://10.0.0.1:8080/x.png")).status_code == 200
    assert sim.stats()["jobs"] == 5


# --- faults -----------------------------------------------------------------------------------------


def test_fault_status_retry_after_and_count(sim: Gateway) -> None:
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


def test_a_fault_with_a_probability_answers_that_share_of_its_requests(sim: Gateway) -> None:
    sim.config(faults=[{"on": "poll", "status": 503, "probability": 0.0, "count": 1000}])
    assert {sim.poll("ltx2-v-nope").status_code for _ in range(30)} == {404}, "probability 0: never"
    assert sim.config()["faults"][0]["count"] == 1000, "a request passed over does not count"

    sim.config(faults=[{"on": "poll", "status": 503, "probability": 1, "count": 3}])
    assert [sim.poll("ltx2-v-nope").status_code for _ in range(5)] == [503] * 3 + [404] * 2, "count still bounds it"

    # Passed over, a request goes on to the next fault: here one that always answers 502.
    faults = [{"on": "poll", "status": 503, "probability": 0.3, "count": 10_000}, {"on": "poll", "status": 502}]
    sim.config(faults=faults)
    with requests.Session() as session:
        answers = [
            session.post(f"{sim.base}{RESULT}", json={"request_id": "x"}, headers=sim.headers(OWN_KEY), timeout=5)
            for _ in range(400)
        ]
    codes = [answer.status_code for answer in answers]
    faulted = codes.count(503)
    assert codes[codes.index(502) + 1 :].count(502) == 0, "the plain fault answered once, then was used up"
    assert codes.count(502) == 1 and codes.count(404) == 400 - faulted - 1
    assert 70 <= faulted <= 170, f"about 30% of 400 polls, not {faulted}"
    [left] = sim.config()["faults"]
    assert (left["probability"], left["count"]) == (0.3, 10_000 - faulted)
    assert sim.stats()["throttled"] == NO_CALLS, "scripted faults are not the limits' 429s"


def test_fault_targets_only_its_endpoint_and_http_date_is_verbatim(sim: Gateway) -> None:
    date = "Wed, 21 Oct 2037 07:28:00 GMT"
    sim.config(faults=[{"on": "poll", "status": 503, "retry_after": date}])
    request_id = sim.submit().json()["request_id"]  # not a poll: unaffected
    reply = sim.poll(request_id)
    assert reply.status_code == 503 and reply.headers["Retry-After"] == date
    assert sim.poll(request_id).status_code == 200


def test_fault_html_body(sim: Gateway) -> None:
    sim.config(faults=[{"on": "any", "status": 502, "body": "html"}])
    reply = sim.status("whatever")
    assert reply.status_code == 502 and reply.headers["Content-Type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in reply.text


def test_fault_malformed_and_empty_bodies(sim: Gateway) -> None:
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


def test_fault_drop_connection(sim: Gateway) -> None:
    sim.config(faults=[{"on": "submit", "drop_connection": True, "count": 2}])
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            sim.submit()
    assert sim.stats()["jobs"] == 0
    assert sim.submit().status_code == 200
    assert sim.stats()["submits"] == 3


def test_fault_on_download(sim: Gateway) -> None:
    request_id = sim.submit().json()["request_id"]
    url = wait_for(lambda: sim.poll(request_id).json(), lambda r: "video" in r)["video"]["url"]
    sim.config(faults=[{"on": "download", "status": 503, "retry_after": "1"}])
    assert sim.poll(request_id).status_code == 200
    first = requests.get(url, timeout=5)
    assert first.status_code == 503 and first.headers["Retry-After"] == "1"
    assert requests.get(url, timeout=5).content == SAMPLE


def test_response_delay_slows_api_calls(sim: Gateway) -> None:
    sim.config(response_delay_seconds=0.3)
    started = time.monotonic()
    assert sim.poll("ltx2-v-nope").status_code == 404
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.Timeout):
        requests.post(f"{sim.base}{SUBMIT}", json=VALID, headers=sim.headers(OWN_KEY), timeout=0.1)


# --- outcomes ---------------------------------------------------------------------------------------

OUTCOMES = [
    ("fail", {"status": "FAILED", "error": "Content generation failed: simulated failure"}, "FAILED"),
    ("error", {"status": "FAILED", "error": "Internal system error (not charged)"}, "ERROR"),
    ("never_finish", None, "PROCESSING"),
    ("unknown_status", {"status": "WIBBLING"}, "WIBBLING"),
]


@pytest.mark.parametrize(("outcome", "legacy", "universal"), OUTCOMES)
def test_outcomes(sim: Gateway, outcome: str, legacy: dict[str, Any] | None, universal: str) -> None:
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


def test_stats_count_everything_received(sim: Gateway) -> None:
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


def test_config_validation_and_reset(sim: Gateway) -> None:
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
        {"faults": [{"status": 500, "probability": 1.5}]},
        {"faults": [{"status": 500, "probability": -0.1}]},
        {"faults": [{"status": 500, "probability": "0.5"}]},
        {"faults": [{"status": 500, "probability": True}]},
        {"processing_seconds_max": -1},
        {"processing_seconds_max": "30"},
        {"processing_seconds": 3, "processing_seconds_max": 2},
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
        "job_times": [],
        "throttled": NO_CALLS,
        "requests": [],
    }


# --- padding ----------------------------------------------------------------------------------------


def test_padding_is_a_valid_free_box_with_exact_length(sim: Gateway) -> None:
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


def test_client_hanging_up_mid_download_is_quiet(sim: Gateway) -> None:
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


# --- gateway limits: the pure parts ------------------------------------------------------------------


def test_rate_window_refuses_beyond_the_limit_until_a_place_frees() -> None:
    window = RateWindow()
    assert window.admit(2, 0.0) is None and window.admit(2, 10.0) is None
    assert window.admit(2, 20.0) == 40, "the call at 0 leaves the window at 60"
    assert window.admit(2, 59.5) == 1, "never 0: rounded up"
    assert window.admit(2, 60.0) is None, "the refused calls did not count"
    assert window.admit(2, 61.0) == 9, "now the call at 10 is the one to leave"
    assert all(window.admit(None, 62.0) is None for _ in range(100)), "no limit admits everything"
    assert window.admit(1, 63.0) == 59, "a lowered limit waits for all 102 calls to leave"


def test_concurrency_wait_is_until_enough_slots_free() -> None:
    assert concurrency_wait([], 2, 0.0) is None
    assert concurrency_wait([30.0], 2, 0.0) is None, "one of two slots is free"
    assert concurrency_wait([30.0, 5.2], 2, 0.0) == 6, "the earliest end frees a slot"
    assert concurrency_wait([None, 5.2], 2, 0.0) == 6, "a job that never ends frees nothing"
    assert concurrency_wait([None, None], 2, 0.0) == NEVER_FREES_SECONDS
    assert concurrency_wait([9.0, 3.0, 7.0], 1, 0.0) == 9, "a lowered limit: three must end"
    assert concurrency_wait([0.3, 0.4], 2, 0.0) == 1
    assert concurrency_wait([1.0, 2.0], None, 0.0) is None and concurrency_wait([1.0], 0, 0.0) is None


def test_slot_utilisation() -> None:
    jobs = [{"request_id": "a", "started": 0.0, "ended": 10.0}, {"request_id": "b", "started": 5.0, "ended": 10.0}]
    assert slot_utilisation(jobs, slots=2) == 0.75, "15 busy slot-seconds of 2 x 10"
    assert slot_utilisation(jobs, slots=1) == 1.5, "more at once than slots"
    assert slot_utilisation(jobs, slots=2, start=5.0) == 1.0
    assert slot_utilisation(jobs, slots=2, start=-10.0, end=20.0) == 0.25, "idle time around the jobs counts"
    running = [*jobs, {"request_id": "c", "started": 8.0, "ended": None}]
    assert slot_utilisation(running, slots=2) == 0.85, "a running job is busy to the window's end"
    assert slot_utilisation(running, slots=3, end=18.0) == pytest.approx((10 + 5 + 10) / 54)
    for jobs_, slots, start, end in [
        (jobs, 0, None, None),
        ([], 1, None, None),
        (jobs, 1, 10.0, None),
        (jobs, 1, 3.0, 3.0),
        ([{"request_id": "c", "started": 8.0, "ended": None}], 1, None, None),
    ]:
        with pytest.raises(ValueError):
            slot_utilisation(jobs_, slots, start, end)


# --- gateway limits, end to end -----------------------------------------------------------------------


def test_concurrency_limit_refuses_a_submit_until_a_slot_frees(sim: Gateway) -> None:
    sim.config(max_concurrent_jobs=2, queue_seconds=0, processing_seconds=0.4)
    first = sim.submit().json()["request_id"]
    sim.config(processing_seconds=30)
    long_started = time.time()
    assert sim.submit().status_code == 200

    refused = sim.submit()
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "concurrency_limit_error" and "2 allowed" in error["message"]
    assert refused.headers["Retry-After"] == "1", "until the earliest job ends (0.4 s), not the latest"
    assert refused.headers["x-request-id"]
    stats = sim.stats()
    assert (stats["submits"], stats["jobs"], len(stats["job_times"])) == (3, 2, 2), "the refused submit made no job"
    assert stats["throttled"] == {"submit": 1, "poll": 0}

    assert "video" in wait_for(lambda: sim.poll(first).json(), lambda r: "video" in r)
    assert sim.submit().status_code == 200, "the finished job freed its slot"
    full = sim.submit()
    assert full.status_code == 429 and full.json()["error"]["type"] == "concurrency_limit_error"
    assert 28 <= int(full.headers["Retry-After"]) <= 30, "now the 30 s job is the earliest to end"
    assert abs(long_started + 30 - time.time() - int(full.headers["Retry-After"])) < 1.5
    assert sim.stats()["jobs"] == 3


def test_rate_limit_counts_submits_and_polls_not_downloads(sim: Gateway) -> None:
    sim.config(rate_limit_per_minute=3, protocol="universal", queue_seconds=0, processing_seconds=0)
    request_id = sim.submit().json()["request_id"]
    media = sim.status(request_id).json()["output"]["media_url"][0]
    assert sim.poll(request_id).status_code == 404, "a legacy poll counts too, whatever it answers"
    for _ in range(3):  # free: the CDN and the control endpoints
        assert requests.get(media, timeout=5).status_code == 200
        sim.stats()

    refused = sim.status(request_id)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 58 <= int(refused.headers["Retry-After"]) <= 60, "until the first call leaves the 60 s window"
    submit = sim.submit()
    assert submit.status_code == 429 and submit.json()["error"]["type"] == "rate_limit_error"
    assert requests.get(media, timeout=5).status_code == 200, "downloads are never throttled"
    stats = sim.stats()
    assert stats["throttled"] == {"submit": 1, "poll": 1}
    assert (stats["submits"], stats["polls"], stats["jobs"]) == (2, 3, 1)


def test_refused_calls_do_not_count_in_the_window(sim: Gateway) -> None:
    sim.config(rate_limit_per_minute=2)
    assert [sim.poll("ltx2-v-nope").status_code for _ in range(5)] == [404, 404, 429, 429, 429]
    sim.config(rate_limit_per_minute=3)
    assert sim.poll("ltx2-v-nope").status_code == 404, "only the two answered calls were in the window"
    assert sim.poll("ltx2-v-nope").status_code == 429
    assert sim.stats()["throttled"] == {"submit": 0, "poll": 4}


def test_checks_run_key_rate_validation_concurrency(sim: Gateway) -> None:
    sim.config(max_concurrent_jobs=1, rate_limit_per_minute=2, processing_seconds=30)
    assert sim.submit().status_code == 200
    assert sim.submit(dict(VALID, fps=50)).status_code == 400, "validation comes before the full slot"
    assert sim.submit(key="wrong-key").status_code == 401, "the key comes before the (spent) rate"
    assert sim.poll("ltx2-v-nope", key=None).status_code == 401
    over = sim.submit(dict(VALID, fps=50))
    assert over.status_code == 429 and over.json()["error"]["type"] == "rate_limit_error", "rate before validation"
    assert sim.stats()["throttled"] == {"submit": 1, "poll": 0}


def test_faults_come_before_the_limits_and_are_not_counted_as_throttled(sim: Gateway) -> None:
    sim.config(rate_limit_per_minute=1, faults=[{"on": "poll", "status": 429, "retry_after": "3", "count": 2}])
    assert [sim.poll("ltx2-v-nope").status_code for _ in range(2)] == [429, 429]
    assert sim.poll("ltx2-v-nope").status_code == 404, "a faulted call never reached the rate window"
    assert sim.poll("ltx2-v-nope").status_code == 429
    assert sim.stats()["throttled"] == {"submit": 0, "poll": 1}


def test_stats_give_each_job_its_start_and_end(sim: Gateway) -> None:
    sim.config(queue_seconds=0.1, processing_seconds=0.2)
    before = time.time()
    ids = [sim.submit().json()["request_id"] for _ in range(2)]
    sim.config(outcome="never_finish")
    stuck = sim.submit().json()["request_id"]
    after = time.time()
    running = sim.stats()["job_times"]
    assert [job["request_id"] for job in running] == [*ids, stuck]
    assert all(before <= job["started"] <= after and job["ended"] is None for job in running)

    time.sleep(0.45)
    times = {job["request_id"]: job for job in sim.stats()["job_times"]}
    assert times[stuck]["ended"] is None, "a job that never finishes holds its slot"
    done = [times[request_id] for request_id in ids]
    for job in done:
        assert job["ended"] == pytest.approx(job["started"] + 0.3)
    assert 0.9 < slot_utilisation(done, slots=2) <= 1.0, "two jobs side by side fill two slots"
    assert slot_utilisation(done, slots=4) == pytest.approx(slot_utilisation(done, slots=2) / 2)


@pytest.mark.parametrize("field", ["max_concurrent_jobs", "rate_limit_per_minute"])
def test_limit_config_is_validated(sim: Gateway, field: str) -> None:
    for value in (-1, 1.5, "2", True, [2]):
        reply = requests.post(f"{sim.base}/_sim/config", json={field: value}, timeout=5)
        assert reply.status_code == 400 and reply.json()["error"].startswith(f"{field} must be "), value
    for value in (3, 0, None):
        assert sim.config(**{field: value})[field] == value


def test_reset_restores_the_start_up_limits_and_clears_their_state(sim: Gateway) -> None:
    sim.config(rate_limit_per_minute=1, max_concurrent_jobs=1)
    assert [sim.poll("ltx2-v-nope").status_code for _ in range(2)] == [404, 429]
    reset = sim.process.reset()
    assert (reset["rate_limit_per_minute"], reset["max_concurrent_jobs"]) == (None, None)
    assert sim.stats()["throttled"] == NO_CALLS
    sim.config(rate_limit_per_minute=1)
    assert sim.poll("ltx2-v-nope").status_code == 404, "the reset emptied the window"


def test_every_reply_carries_its_own_request_id(sim: Gateway) -> None:
    sim.config(faults=[{"on": "poll", "status": 503}])
    replies = [
        sim.submit(),
        sim.submit(key=None),
        sim.poll("ltx2-v-nope"),  # the fault
        sim.poll("ltx2-v-nope"),
        requests.get(f"{sim.base}/files/sample.jpg", timeout=5),
        requests.get(f"{sim.base}/no/such/path", timeout=5),
    ]
    assert [reply.status_code for reply in replies] == [200, 401, 503, 404, 200, 404]
    ids = [reply.headers["x-request-id"] for reply in replies]
    assert len(set(ids)) == len(ids) and all(len(request_id) == 32 for request_id in ids)


# --- CLI, https and state file ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def flagged_process(throwaway_ca: TlsFiles) -> Iterator[SimulatorProcess]:
    """A simulator started with the limit flags and serving https with the throwaway CA's certificate."""
    args = ("--max-concurrent-jobs", "1", "--rate-limit-per-minute", "50", "--processing-seconds", "30")
    with SimulatorProcess(*args, tls_cert=throwaway_ca.server_cert, tls_key=throwaway_ca.server_key) as process:
        yield process
        assert process.errors() == ""


@pytest.fixture
def flagged(flagged_process: SimulatorProcess, throwaway_ca: TlsFiles) -> Gateway:
    flagged_process.reset()
    return Gateway(flagged_process, verify=str(throwaway_ca.ca_cert))


def test_https_is_trusted_with_the_ca_and_refused_without(flagged: Gateway) -> None:
    assert flagged.base.startswith("https://127.0.0.1:")
    flagged.config(protocol="universal", queue_seconds=0, processing_seconds=0)
    reply = flagged.submit()
    assert reply.status_code == 202
    polling_url = reply.json()["polling_url"]
    assert polling_url.startswith(f"{flagged.base}/v2/requests/status/")

    def fetch() -> dict[str, Any]:
        answer = requests.get(polling_url, headers=flagged.headers(OWN_KEY), verify=flagged.verify, timeout=5)
        assert answer.status_code == 200
        return dict(answer.json())

    media = wait_for(fetch, lambda r: r["status"] == "COMPLETED")["output"]["media_url"][0]
    assert media.startswith(f"{flagged.base}/files/")
    assert requests.get(media, verify=flagged.verify, timeout=5).content == SAMPLE
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(polling_url, headers=flagged.headers(OWN_KEY), timeout=5)
    assert flagged.stats()["jobs"] == 1, "the control calls go over https too"


def test_limit_flags_set_the_start_up_limits(flagged: Gateway) -> None:
    config = flagged.config()
    assert (config["max_concurrent_jobs"], config["rate_limit_per_minute"]) == (1, 50)
    assert flagged.submit().status_code == 200
    refused = flagged.submit()
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "concurrency_limit_error"
    assert 29 <= int(refused.headers["Retry-After"]) <= 31, "1 s queued and 30 s processing"
    flagged.config(max_concurrent_jobs=0)
    assert flagged.submit().status_code == 200, "0 is unlimited"

    assert flagged.process.reset()["max_concurrent_jobs"] == 1, "a reset restores the flag's value"
    answers = [flagged.poll("ltx2-v-nope").status_code for _ in range(51)]
    assert answers == [404] * 50 + [429]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--max-concurrent-jobs", "-1"], "argument --max-concurrent-jobs: must be a whole number >= 0"),
        (["--rate-limit-per-minute", "ten"], "argument --rate-limit-per-minute: must be a whole number >= 0"),
        (["--tls-cert", "server.pem"], "--tls-cert and --tls-key go together"),
    ],
)
def test_bad_flags_are_refused(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        simulator_main(argv)
    assert stopped.value.code == 2 and says in capsys.readouterr().err


def test_unusable_tls_files_stop_the_start(throwaway_ca: TlsFiles, tmp_path: Path) -> None:
    mismatched = ["--tls-cert", str(throwaway_ca.ca_cert), "--tls-key", str(throwaway_ca.server_key)]
    missing = ["--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(tmp_path / "none.pem")]
    for argv in (mismatched, missing):
        with pytest.raises(SystemExit, match="cannot use --tls-cert/--tls-key"):
            simulator_main(["--port", "0", *argv])
    with pytest.raises(ValueError, match="go together"):
        SimulatorProcess(tls_cert=throwaway_ca.server_cert)


def test_state_file_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "jobs.json"
    env = dict(os.environ, LTX2_SIMULATOR_KEY="env-key")
    args = ("--state-file", str(state), "--protocol", "universal", "--queue-seconds", "0.3")
    with started(*args, "--processing-seconds", "0.3", key=None, env=env) as first:
        reply = first.submit(key="env-key")
        assert reply.status_code == 202, "the key comes from LTX2_SIMULATOR_KEY, the protocol from --protocol"
        request_id = reply.json()["request_id"]
        first.config(processing_seconds=60)
        long_id = first.submit(key="env-key").json()["request_id"]
        started_at = {job["request_id"]: job["started"] for job in first.stats()["job_times"]}
    saved = json.loads(state.read_text())["jobs"]
    assert [job["request_id"] for job in saved] == [request_id, long_id] and saved[0]["params"] == VALID

    with started(*args, "--max-concurrent-jobs", "1", key=None, env=env) as second:
        stats = second.stats()
        assert stats["jobs"] == 2 and {job["request_id"]: job["started"] for job in stats["job_times"]} == started_at
        refused = second.submit(key="env-key")
        assert refused.status_code == 429, "the restored 60 s job holds the only slot"
        assert 30 <= int(refused.headers["Retry-After"]) <= 61
        done = wait_for(lambda: second.status(request_id, key="env-key").json(), lambda r: r["output"])
        assert done["status"] == "COMPLETED"
        media = done["output"]["media_url"][0]
        assert media.startswith(second.base) and requests.get(media, timeout=5).content == SAMPLE
        ended = {job["request_id"]: job["ended"] for job in second.stats()["job_times"]}
        assert ended[long_id] is None and ended[request_id] == pytest.approx(started_at[request_id] + 0.6)


def test_job_lengths_drawn_from_a_range_are_kept_across_a_restart(tmp_path: Path) -> None:
    """Each job's processing time is drawn once, at its submit, and kept with the job in the state file:
    a simulator restarted with other flags ends the jobs it had when their own drawn lengths say."""
    state = tmp_path / "jobs.json"
    args = ("--state-file", str(state), "--queue-seconds", "0")
    with started(*args, "--processing-seconds", "0.3", "--processing-seconds-max", "1.2") as first:
        config = first.config()
        assert (config["processing_seconds"], config["processing_seconds_max"]) == (0.3, 1.2)
        ids = [first.submit().json()["request_id"] for _ in range(12)]
        assert first.config(processing_seconds_max=None)["processing_seconds_max"] is None
        steady = first.submit().json()["request_id"]
    drawn = {job["request_id"]: job["processing_seconds"] for job in json.loads(state.read_text())["jobs"]}
    assert all(0.3 <= drawn[request_id] <= 1.2 for request_id in ids), drawn
    assert len({round(drawn[request_id], 3) for request_id in ids}) > 6, f"drawn per job: {drawn}"
    assert drawn[steady] == 0.3, "without a maximum every job takes processing_seconds, as before"

    with started(*args, "--processing-seconds", "30") as second:
        assert second.config()["processing_seconds_max"] is None
        deadline = time.monotonic() + 10
        times = second.stats()["job_times"]
        while any(job["ended"] is None for job in times):
            assert time.monotonic() < deadline, times
            time.sleep(0.1)
            times = second.stats()["job_times"]
    for job in times:
        assert job["ended"] - job["started"] == pytest.approx(drawn[job["request_id"]], abs=1e-3), job


def test_a_processing_maximum_below_the_minimum_is_refused() -> None:
    with pytest.raises(SystemExit, match="--processing-seconds-max must be >= --processing-seconds"):
        simulator_main(["--processing-seconds", "5", "--processing-seconds-max", "4"])
