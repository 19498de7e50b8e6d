"""The ``ltx2`` connection read into a ``Gateway``: base URL, key, and how calls travel (TLS, proxies)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_ltx2.api.redaction import Redactor
from airflow_provider_ltx2.exceptions import Ltx2AuthError, Ltx2ValidationError
from airflow_provider_ltx2.get_provider_info import DEFAULT_BASE_URL


@dataclass(frozen=True)
class Network:
    """How calls travel: TLS verification, a client certificate and proxies, the same on both paths.

    The connection extras ``verify`` (true, false or a CA bundle path), ``cert`` (a PEM path, or
    ``[cert, key]``) and ``proxies`` (``{"http": url, "https": url}``) mean what they mean for
    providers-http's ``HttpHook``; left unset, the standard variables apply (``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``), for requests in the
    worker as for aiohttp in the triggerer, which honours none of them unless told.
    """

    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    proxies: tuple[tuple[str, str], ...] = ()

    def ca_file(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The CA bundle to trust: the ``verify`` path, else the environment's, else None (the default store)."""
        if isinstance(self.verify, str):
            return self.verify
        if self.verify is False:  # no bundle from the environment turns the check back on
            return None
        env = os.environ if environ is None else environ
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            if env.get(name):
                return env[name]
        return None

    def proxy_for(self, url: str) -> str | None:
        """The proxy for ``url``: the extras' for its scheme, else the environment's unless ``NO_PROXY``
        exempts the host (as requests decides); None: a direct connection."""
        import urllib.request  # here, not at DAG-parse time: it costs milliseconds to import

        parts = urlsplit(url)
        explicit = dict(self.proxies).get(parts.scheme)
        if explicit:
            return explicit
        if urllib.request.proxy_bypass(parts.hostname or ""):
            return None
        return urllib.request.getproxies().get(parts.scheme)


def first_private_address(addresses: Iterable[str]) -> str | None:
    """The first address a public service could not reach (loopback, private, link-local, metadata, reserved,
    an IPv4 address mapped into IPv6 included), or None when all are public."""
    import ipaddress

    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is no address
        except ValueError:
            return text
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            return text
    return None


def _extra_value(extra: Mapping[str, Any], name: str) -> Any:
    """An extra as the form or JSON stored it (Airflow 2's form prefixes ``extra__ltx2__``); None when empty."""
    found = extra.get(name, extra.get(f"extra__ltx2__{name}"))
    return None if found in (None, "") else found


def _invalid_extra(conn_id: str, name: str, found: Any, accepted: str) -> Ltx2ValidationError:
    return Ltx2ValidationError(f"Connection {conn_id!r} has {name}={found!r}: accepted values are {accepted}.")


def network_from_extra(conn_id: str, extra: Mapping[str, Any]) -> Network:
    """Read ``verify``, ``cert`` and ``proxies`` from a connection's extras (the form's fields are strings)."""

    def value(name: str) -> Any:
        return _extra_value(extra, name)

    def invalid(name: str, found: Any, accepted: str) -> Ltx2ValidationError:
        return _invalid_extra(conn_id, name, found, accepted)

    verify: bool | str = True
    if (found := value("verify")) is not None:
        text = str(found).strip()
        if isinstance(found, bool) or text.lower() in ("true", "false"):
            verify = found if isinstance(found, bool) else text.lower() == "true"
        elif isinstance(found, str) and text:
            verify = text
        else:
            raise invalid("verify", found, "true, false or the path of a CA bundle")
    cert: str | tuple[str, str] | None = None
    if (found := value("cert")) is not None:
        parts = found if isinstance(found, list) else str(found).split(",")
        parts = [str(part).strip() for part in parts]
        if len(parts) not in (1, 2) or not all(parts):
            raise invalid("cert", found, "the path of a PEM certificate, or [certificate path, key path]")
        cert = parts[0] if len(parts) == 1 else (parts[0], parts[1])
    proxies: dict[str, str] = {}
    if (found := value("proxies")) is not None:
        if isinstance(found, str) and found.strip().startswith("{"):
            try:
                found = json.loads(found)
            except ValueError:
                raise invalid("proxies", found, 'a JSON object such as {"https": "http://proxy:3128"}') from None
        if isinstance(found, str):  # one proxy for both schemes
            found = {"http": found.strip(), "https": found.strip()}
        if not isinstance(found, dict) or not all(
            scheme in ("http", "https") and isinstance(url, str) and urlsplit(url).hostname
            for scheme, url in found.items()
        ):
            raise invalid("proxies", found, '{"http": proxy URL, "https": proxy URL}, or one proxy URL for both')
        proxies = dict(found)
    return Network(verify=verify, cert=cert, proxies=tuple(sorted(proxies.items())))


@dataclass(frozen=True)
class SpendCaps:
    """The key's caps on spend (USD per UTC day and per calendar month) and the ledger folder that keeps them.

    A ledger without a cap records spend (the UI shows it) and refuses nothing; a cap needs a ledger.
    """

    daily_usd: float | None = None
    monthly_usd: float | None = None
    ledger_uri: str | None = None
    ledger_conn_id: str | None = None

    @property
    def capped(self) -> bool:
        return self.daily_usd is not None or self.monthly_usd is not None


def spend_caps_from_extra(conn_id: str, extra: Mapping[str, Any]) -> SpendCaps:
    """Read the spend guard's extras; raise ``Ltx2ValidationError`` naming the extra for a value that cannot work,
    and for a cap without ``spend_ledger_uri`` (a cap nothing could enforce)."""

    def amount(name: str) -> float | None:
        found = _extra_value(extra, name)
        if found is None:
            return None
        try:
            value = float(found.strip()) if isinstance(found, str) else found
        except ValueError:
            value = None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf"):
            return float(value)
        raise _invalid_extra(conn_id, name, found, "an amount in USD >= 0, or empty for no cap")

    daily, monthly = amount("daily_budget_usd"), amount("monthly_budget_usd")
    ledger_uri = _extra_value(extra, "spend_ledger_uri")
    if ledger_uri is not None:
        ledger_uri = _ledger_uri(conn_id, ledger_uri)
    ledger_conn_id = _extra_value(extra, "spend_ledger_conn_id")
    if ledger_conn_id is not None and not isinstance(ledger_conn_id, str):
        raise _invalid_extra(conn_id, "spend_ledger_conn_id", ledger_conn_id, "a connection id")
    caps = SpendCaps(daily, monthly, ledger_uri, ledger_conn_id.strip() if ledger_conn_id else None)
    if caps.capped and caps.ledger_uri is None:
        cap = "daily_budget_usd" if daily is not None else "monthly_budget_usd"
        raise Ltx2ValidationError(
            f"Connection {conn_id!r} sets {cap}={daily if daily is not None else monthly:g} without spend_ledger_uri: "
            "a cap needs the folder where every task records what it spends (any object store, e.g. "
            "s3://bucket/ltx2-spend/ with spend_ledger_conn_id). Nothing was sent."
        )
    return caps


def _ledger_uri(conn_id: str, found: Any) -> str:
    """``spend_ledger_uri`` as a folder URI; ``Ltx2ValidationError`` naming it (its password masked) otherwise.

    A user part alone is allowed: Azure's ``abfs://container@account...`` names its container there.
    """
    text = found.strip() if isinstance(found, str) else ""
    try:
        parts = urlsplit(text)
        usable = parts.password is None and bool(parts.scheme) and "://" in text
    except ValueError:  # e.g. an unclosed "[" in the host
        usable = False
    if (
        not usable
        or parts.query
        or parts.fragment
        or not (parts.netloc or parts.path.strip("/"))
        or not (text.isascii() and text.isprintable())
    ):
        raise _invalid_extra(
            conn_id,
            "spend_ledger_uri",
            _without_password(found),
            "the URI of a folder in any object store, such as s3://bucket/ltx2-spend/ or file:///data/ltx2-spend/, "
            "without a password, query or fragment",
        )
    return text.rstrip("/")


def _without_password(uri: Any) -> Any:
    """A URI as an error may show it: user info with a password (an access key and secret) replaced by ``***``."""
    if not isinstance(uri, str) or "@" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
    except ValueError:
        return "(not shown: it holds an '@')"
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


TRUST_FIX = "set the LTX-2 connection's extra `verify` to the CA bundle that signed it (or REQUESTS_CA_BUNDLE)"


def tls_refusal(base_url: str, error: BaseException) -> str:
    """What to say when the gateway's certificate was not trusted: why, that nothing was sent, and the fix."""
    detail = untrusted_certificate(error) or f"{type(error).__name__}: {error}"
    return (
        f"The TLS certificate of the LTX-2 gateway {base_url} was not trusted ({detail}); nothing was sent. "
        f"To trust it, {TRUST_FIX}."
    )


def untrusted_certificate(error: BaseException) -> str | None:
    """Why a TLS handshake refused a server's certificate, e.g. "certificate verify failed: unable to get local
    issuer certificate"; None for any other error.

    ssl's own error says it, but requests and urllib3 wrap it two levels deep (``args``, ``reason``), aiohttp
    once (``args``), and the wrappers' text is long and holds the URL, so the chain is walked for it.
    """
    import ssl

    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # aiohttp's wrapper is itself an SSLCertVerificationError, without the reason: it is in its args
        if isinstance(current, ssl.SSLCertVerificationError) and getattr(current, "verify_message", None):
            return f"certificate verify failed: {current.verify_message}"
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return None


@dataclass(frozen=True)
class Gateway:
    """The gateway's base URL, the subscription key (kept out of ``repr``) and how to reach it."""

    base_url: str
    key: str = field(repr=False)
    network: Network = field(default_factory=Network, compare=False)

    @cached_property
    def _key_redactor(self) -> Redactor:
        return Redactor((self.key,))

    def redactor(self, *hidden: str) -> Redactor:
        """What hides the key (and any ``hidden`` credential, a signed URL) in what the gateway echoed."""
        return Redactor((self.key, *hidden)) if hidden else self._key_redactor


def gateway_from_connection(
    conn_id: str, host: str | None, password: str | None, extra: Mapping[str, Any] | None = None
) -> Gateway:
    """Read the connection: the key in ``password``, an optional base URL in ``host``, network extras."""
    if not password or not password.strip():
        raise Ltx2AuthError(
            f"Connection {conn_id!r} has no subscription key: put the key in its password field "
            "('Subscription key' in the UI)."
        )
    key = password.strip()
    if not (key.isascii() and key.isprintable()):
        # requests prints a header value it refuses (a line break) in full, and aiohttp fails to encode a
        # non-Latin-1 one in the middle of a trigger: refuse it here, without showing it.
        raise Ltx2AuthError(
            f"Connection {conn_id!r} has a subscription key with a character an HTTP header cannot carry (a line "
            "break, a control or a non-ASCII character): accepted values are printable ASCII. Copy the key again."
        )
    base_url = (host or DEFAULT_BASE_URL).strip()
    if "://" not in base_url:
        base_url = f"https://{base_url}"
    parts = urlsplit(base_url)
    plain = base_url.isascii() and base_url.isprintable() and not any(char in base_url for char in " \\")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or "?" in base_url
        or "#" in base_url
        or not plain
    ):
        raise Ltx2ValidationError(
            f"Connection {conn_id!r} has host={host!r}: accepted values are an http(s) base URL such as "
            f"{DEFAULT_BASE_URL!r}, without user info, query or fragment."
        )
    return Gateway(base_url=base_url.rstrip("/"), key=key, network=network_from_extra(conn_id, extra or {}))
