"""Properties of the request contract, over generated inputs (hypothesis) and a real simulator.

Every combination of request fields, valid or not (including the strings templates render, such as
"6" or "true"), either validates into a body the simulator accepts when it is really sent, or is refused
with ``Ltx2ValidationError`` naming a bad field before any request leaves. Each generated value carries
its validity by construction, from the table in docs/gateway-contract.md, so the property checks the validation against
the contract rather than against itself. Hostile prompts reach the gateway exactly as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from airflow_provider_ltx2.api.calls import auth_headers, submit_call
from airflow_provider_ltx2.api.request import build_request
from airflow_provider_ltx2.exceptions import Ltx2ValidationError
from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
from airflow_provider_ltx2.operators.ltx2 import Ltx2GenerateVideoOperator
from airflow_provider_ltx2.simulator.process import SimulatorProcess
from tests.conftest import KEY
from tests.fakes import task_context

# Bounded so the module stays well under a minute; hypothesis's example database is not kept.
SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)


def padded(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Text as a template may render it: sometimes with spaces or a newline around it."""
    return st.tuples(st.sampled_from(["", " ", "  ", "\n"]), text, st.sampled_from(["", " ", "\n"])).map("".join)


NOT_TEXT = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.lists(st.integers()))
NOT_TEXT_NOR_NONE = NOT_TEXT.filter(lambda value: value is not None)
HOST = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){1,2}", fullmatch=True)
PATH = st.from_regex(r"(/[A-Za-z0-9._~%-]{1,12}){0,3}(\.jpe?g|\.png)?", fullmatch=True)
NOT_SENT = st.none()  # an optional field left out: the service's default applies


def whole_numbers(accepted: list[int], others: st.SearchStrategy[int]) -> tuple[st.SearchStrategy[Any], ...]:
    """An int field: the accepted ints, as ints or as the strings a template renders; anything else."""
    good = st.sampled_from(accepted)
    bad = others.filter(lambda number: number not in accepted)
    return (
        st.one_of(NOT_SENT, good, padded(good.map(str))),
        st.one_of(
            bad,
            bad.map(str),
            good.map(float),
            good.map(lambda number: f"{number}.5"),
            st.booleans(),
            st.sampled_from(["", "six", "6s", "0x6", "[6]", "6 6"]),
            st.lists(good, min_size=1, max_size=2),
        ),
    )


def choices(accepted: list[str]) -> tuple[st.SearchStrategy[Any], ...]:
    good = st.sampled_from(accepted)
    return (
        st.one_of(NOT_SENT, good, padded(good)),
        st.one_of(
            good.map(lambda text: text.replace("p", "P").replace(":", "/")),
            st.text(max_size=8).filter(lambda text: text.strip() not in accepted),
            NOT_TEXT_NOR_NONE,
        ),
    )


# For each field, (values the contract in docs/gateway-contract.md accepts, values it refuses).
FIELDS: dict[str, tuple[st.SearchStrategy[Any], ...]] = {
    "image_url": (
        st.one_of(
            st.tuples(st.sampled_from(["http://", "https://", "HTTPS://"]), HOST, PATH).map("".join),
            padded(st.tuples(st.just("https://"), HOST, PATH).map("".join)),
        ),
        st.one_of(
            # object-storage URIs (s3://, gs://, file://...) are accepted: the task signs them, see test_storage
            st.tuples(st.sampled_from(["ftp://", "sftp://", "gopher://", "data:"]), HOST, PATH).map("".join),
            st.sampled_from(["", " ", "http://", "https:///cat.jpg", "cat.jpg", "//cdn.example.com/cat.jpg"]),
            st.from_regex(r"[a-z]{1,10}\.(jpg|png)", fullmatch=True),
            NOT_TEXT,
        ),
    ),
    "prompt": (
        st.one_of(
            st.text(min_size=1, max_size=200).filter(lambda text: text.strip() != ""),
            st.sampled_from(['He said "cut!"', "line one\nline two", "été \U0001f3ac 映画", "{{ not a template }}"]),
        ),
        st.one_of(st.text(alphabet=" \t\n\r\u00a0\u2003", max_size=5), NOT_TEXT),
    ),
    "duration": whole_numbers(list(range(2, 11)), st.integers(-20, 40)),
    "resolution": choices(["720p", "1080p", "2160p"]),
    "aspect_ratio": choices(["16:9", "9:16", "1:1"]),
    "fps": whole_numbers([24, 25, 30], st.integers(0, 120)),
    "generate_audio": (
        st.one_of(NOT_SENT, st.booleans(), padded(st.sampled_from(["true", "false", "True", "FALSE", "tRuE"]))),
        st.one_of(
            st.sampled_from(["yes", "no", "1", "0", "", "on", "truthy"]),
            st.integers(0, 1),
            st.floats(allow_nan=False),
        ),
    ),
}


@st.composite
def requests_and_bad_fields(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """All fields, and which of them hold a value the contract refuses (none, about half the time)."""
    bad = draw(st.one_of(st.just(set()), st.sets(st.sampled_from(list(FIELDS)), min_size=1, max_size=3)))
    fields = {name: draw(FIELDS[name][1] if name in bad else FIELDS[name][0]) for name in FIELDS}
    return fields, bad


MIXED = "".join(
    ['"', "'", "\\", "\n", "\r\n", "\t", "{", "}", "<", "&", "%", "\u00e9", "\u6620", "\U0001f3ac", "\u202e"]
)
HOSTILE_PROMPTS = st.one_of(
    st.text(alphabet=st.sampled_from(MIXED) | st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.tuples(st.sampled_from(MIXED), st.integers(9_000, 11_000)).map(lambda pair: "x" + pair[0] * pair[1]),
    st.just('{"prompt": "injected", "duration": 10}'),
).filter(lambda text: text.strip() != "")


@pytest.fixture(scope="module")
def gateway(simulator_process: SimulatorProcess) -> Iterator[SimulatorProcess]:
    """The session's simulator, with ``ltx2_default`` pointing at it (hypothesis wants no per-test fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_LTX2_DEFAULT", simulator_process.connection())
        simulator_process.reset()
        yield simulator_process


def expected_body(fields: dict[str, Any]) -> dict[str, Any]:
    """The body the contract says a valid request becomes: types converted, spaces trimmed, None left out."""
    body: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if name in ("duration", "fps"):
            body[name] = int(value.strip()) if isinstance(value, str) else value
        elif name == "generate_audio":
            body[name] = value.strip().lower() == "true" if isinstance(value, str) else value
        elif name == "prompt":
            body[name] = value  # exactly as written
        else:
            body[name] = value.strip()
    return body


@pytest.mark.slow
@SETTINGS
@given(generated=requests_and_bad_fields())
def test_a_request_is_sent_whole_or_refused_naming_a_bad_field(
    gateway: SimulatorProcess, generated: tuple[dict[str, Any], set[str]]
) -> None:
    fields, bad = generated
    submits_before = gateway.stats()["submits"]
    try:
        body = build_request(**fields)
    except Ltx2ValidationError as error:
        named = re.match(r"Invalid LTX-2 request field (\w+)=", str(error))
        assert named and named[1] in bad, f"{error} names none of the bad fields {sorted(bad)}"
        event(f"refused, naming {named[1]}")
        operator = Ltx2GenerateVideoOperator(task_id="generate", wait_for_completion=False, **fields)
        with pytest.raises(Ltx2ValidationError):
            operator.execute(task_context())
        assert gateway.stats()["submits"] == submits_before, "refused before any request was sent"
        return

    assert not bad, f"{sorted(bad)} accepted: {body}"
    event(f"sent, {len(body)} fields")
    assert body == expected_body(fields)
    call = submit_call(gateway.base_url, body)
    reply = requests.post(call.url, json=call.json_body, headers=auth_headers(KEY), timeout=10)
    assert reply.status_code in (200, 202), f"the gateway refused {body}: {reply.status_code} {reply.text}"
    stats = gateway.stats()
    assert stats["submits"] == submits_before + 1 and stats["requests"][-1] == body


@settings(SETTINGS, max_examples=40)
@given(prompt=HOSTILE_PROMPTS)
def test_hostile_prompts_reach_the_gateway_intact(gateway: SimulatorProcess, prompt: str) -> None:
    body = build_request(image_url="https://images.example.com/cat.jpg", prompt=prompt)
    assert body["prompt"] == prompt
    job = Ltx2Hook().submit(body)  # the client the operator uses, JSON encoding and all
    received = gateway.stats()["requests"][-1]
    assert job.request_id and received == body and received["prompt"] == prompt


@pytest.mark.parametrize(
    "url",
    [
        "https://:443/cat.jpg",
        "javascript:alert(1)",
        "mailto:someone@example.com",
        "https//images.example.com/cat.jpg",
        "https://[::1/cat.jpg",
        "https://images.example.com:99999/cat.jpg",
        "https://exa mple.com/cat.jpg",
        "https://images.example.com\n/cat.jpg",
    ],
)
def test_malformed_image_urls_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(Ltx2ValidationError, match="request field image_url="):
        build_request(image_url=url, prompt="the cat turns its head")
