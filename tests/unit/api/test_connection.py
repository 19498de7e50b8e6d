"""Unit tests of ``api.connection``: the gateway's base URL and key, and the network extras (TLS trust, proxies),
read from an Airflow connection. The extras at work on both paths are in tests/integration/test_network.py."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import pytest
import requests
import urllib3
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ltx2.api.connection import (
    Gateway,
    Network,
    gateway_from_connection,
    network_from_extra,
    tls_refusal,
)
from airflow_provider_ltx2.contract import KEY_HEADER
from airflow_provider_ltx2.exceptions import Ltx2AuthError, Ltx2ValidationError
from airflow_provider_ltx2.get_provider_info import DEFAULT_BASE_URL
from tests.conftest import BASE, SECRET


@pytest.mark.parametrize("password", [None, ""])
def test_gateway_from_connection_without_a_key_names_the_connection(password: str | None) -> None:
    with pytest.raises(Ltx2AuthError, match="'my_ltx2'") as caught:
        gateway_from_connection("my_ltx2", None, password)

    assert isinstance(caught.value, AirflowFailException)


@pytest.mark.parametrize("password", ["   ", "\n"])
def test_gateway_from_connection_with_a_blank_key_is_an_auth_error(password: str) -> None:
    with pytest.raises(Ltx2AuthError, match="'my_ltx2'"):
        gateway_from_connection("my_ltx2", None, password)


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        (None, DEFAULT_BASE_URL),
        ("", DEFAULT_BASE_URL),
        ("gateway.example.com", "https://gateway.example.com"),
        ("gateway.example.com/", "https://gateway.example.com"),
        ("localhost:8080", "https://localhost:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("  https://gw.example.com/prefix/ ", "https://gw.example.com/prefix"),
    ],
)
def test_gateway_from_connection_base_url(host: str | None, base_url: str) -> None:
    gateway = gateway_from_connection("ltx2_default", host, SECRET)

    assert gateway.base_url == base_url
    assert gateway.key == SECRET


def test_gateway_from_connection_strips_the_key() -> None:
    assert gateway_from_connection("ltx2_default", None, f"  {SECRET}\n").key == SECRET


@pytest.mark.parametrize("host", ["ftp://gateway.example.com", "file:///etc", "ws://gateway.example.com"])
def test_gateway_from_connection_rejects_a_non_http_host(host: str) -> None:
    with pytest.raises(Ltx2ValidationError, match="'my_ltx2'") as caught:
        gateway_from_connection("my_ltx2", host, SECRET)

    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("host", ["https:///v1", "https://"])
def test_gateway_from_connection_rejects_a_url_without_a_host(host: str) -> None:
    with pytest.raises(Ltx2ValidationError):
        gateway_from_connection("my_ltx2", host, SECRET)


def test_gateway_repr_and_str_do_not_show_the_key() -> None:
    gateway = gateway_from_connection("ltx2_default", None, SECRET)

    assert SECRET not in repr(gateway)
    assert SECRET not in str(gateway)
    assert DEFAULT_BASE_URL in repr(gateway)


def test_gateway_redact_replaces_every_occurrence_of_the_key() -> None:
    gateway = Gateway(BASE, SECRET)

    redacted = gateway.redactor().text(f"header {KEY_HEADER}: {SECRET}; echoed {SECRET}!")

    assert redacted == f"header {KEY_HEADER}: ***; echoed ***!"
    assert gateway.redactor().text("nothing secret") == "nothing secret"
    assert Gateway(BASE, "").redactor().text("text") == "text"


def refused_certificate() -> ssl.SSLCertVerificationError:
    """ssl's error for a certificate no trusted CA signed, as the handshake raises it."""
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    return error


@pytest.mark.parametrize(
    "error",
    [
        # requests -> urllib3's MaxRetryError -> urllib3's SSLError -> ssl's error (the worker side)
        requests.exceptions.SSLError(
            urllib3.exceptions.MaxRetryError(None, "/v1", urllib3.exceptions.SSLError(refused_certificate()))
        ),
        # aiohttp's wrapper, itself an SSLCertVerificationError without the reason (the triggerer side)
        aiohttp.ClientConnectorCertificateError(None, refused_certificate()),
    ],
    ids=["requests", "aiohttp"],
)
def test_a_refused_gateway_certificate_says_why_and_what_fixes_it(error: Exception) -> None:
    message = tls_refusal(BASE, error)
    assert "(certificate verify failed: unable to get local issuer certificate)" in message, message
    assert BASE in message and "nothing was sent" in message and "extra `verify`" in message


@pytest.mark.parametrize(
    ("password", "why"),
    [
        (f"{SECRET}\nX-Injected: 1", "a line break inside"),
        (f"{SECRET}\rX-Injected: 1", "a carriage return inside"),
        ("clé-" + SECRET, "a non-ASCII character"),
        (SECRET + "\x00", "a NUL"),
    ],
)
def test_a_key_a_header_cannot_carry_is_refused_without_showing_it(password: str, why: str) -> None:
    """requests printed such a key in full in InvalidHeader; aiohttp crashed the triggerer encoding it."""
    with pytest.raises(Ltx2AuthError, match="printable ASCII") as caught:
        gateway_from_connection("my_ltx2", None, password)

    assert SECRET not in str(caught.value), why
    assert "my_ltx2" in str(caught.value)


@pytest.mark.parametrize(
    "host",
    [
        "https://gateway.example.com/?a=b",
        "https://gateway.example.com/#x",
        "https://gateway.example.com/?a=b#x",
        "https://gateway.example.com/pre fix",
        "https://gateway.example.com\\@evil.example",
        "https://gateway.example.com/a\nb",
    ],
)
def test_a_base_url_with_a_query_fragment_or_odd_characters_is_refused(host: str) -> None:
    """Submits would go to ``host + path`` with the query or fragment in the way, or to another host."""
    with pytest.raises(Ltx2ValidationError, match="without user info, query or fragment"):
        gateway_from_connection("my_ltx2", host, SECRET)


# ------------------------------------------------------------------------------------------ the network extras


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, Network()),
        ({"verify": ""}, Network()),
        ({"verify": "true"}, Network(verify=True)),
        ({"verify": " False "}, Network(verify=False)),
        ({"verify": False}, Network(verify=False)),
        ({"verify": "/etc/ca.pem"}, Network(verify="/etc/ca.pem")),
        ({"extra__ltx2__verify": "FALSE"}, Network(verify=False)),  # the form's prefixed field name
        ({"cert": "/c.pem"}, Network(cert="/c.pem")),
        ({"cert": "/c.pem, /k.pem"}, Network(cert=("/c.pem", "/k.pem"))),
        ({"cert": ["/c.pem", "/k.pem"]}, Network(cert=("/c.pem", "/k.pem"))),
        (
            {"proxies": '{"https": "http://proxy:3128"}'},
            Network(proxies=(("https", "http://proxy:3128"),)),
        ),
        (
            {"proxies": {"http": "http://a:1", "https": "http://b:2"}},
            Network(proxies=(("http", "http://a:1"), ("https", "http://b:2"))),
        ),
        (
            {"proxies": "http://proxy:3128"},
            Network(proxies=(("http", "http://proxy:3128"), ("https", "http://proxy:3128"))),
        ),
    ],
)
def test_network_extras_are_read_as_providers_http_reads_them(extra: dict[str, Any], expected: Network) -> None:
    assert network_from_extra("ltx2_default", extra) == expected


@pytest.mark.parametrize(
    ("name", "value", "shown", "accepted"),
    [
        ("verify", 5, "5", "true, false or the path of a CA bundle"),
        ("verify", "   ", "'   '", "true, false or the path of a CA bundle"),
        ("verify", ["/ca.pem"], "['/ca.pem']", "true, false or the path of a CA bundle"),
        ("cert", "/c.pem,", "'/c.pem,'", "[certificate path, key path]"),
        ("cert", "/a,/b,/c", "'/a,/b,/c'", "[certificate path, key path]"),
        ("cert", [], "[]", "[certificate path, key path]"),
        ("proxies", '{"https": ', "'{\"https\": '", "a JSON object"),
        ("proxies", {"ftp": "http://proxy:21"}, "'ftp'", "one proxy URL for both"),
        ("proxies", {"https": "proxy-without-scheme"}, "proxy-without-scheme", "one proxy URL for both"),
        ("proxies", "not a url", "not a url", "one proxy URL for both"),
        ("proxies", 3128, "3128", "one proxy URL for both"),
    ],
)
def test_a_bad_network_extra_names_the_field_its_value_and_what_is_accepted(
    name: str, value: Any, shown: str, accepted: str
) -> None:
    with pytest.raises(Ltx2ValidationError) as caught:
        network_from_extra("ltx2_default", {name: value})
    message = str(caught.value)
    assert f"'ltx2_default' has {name}=" in message and shown in message and accepted in message, message
