"""``Ltx2Hook``: the one client of the LTX-2 gateway, with a sync side (tasks) and an async side (trigger).

Both sides build their calls and read the replies with ``airflow_provider_ltx2.api``; this module only
moves bytes (``requests`` in the worker, ``aiohttp`` in the triggerer) and sleeps between retries. What a
poll means for a wait is ``waits.after_poll``'s to decide, and where a video's bytes go, ``delivery``'s.
``HttpHook`` is not used: its retries ignore ``Retry-After`` and would resend a paid submit after a
read timeout, and its connection form would show fields this API does not use.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import socket
import ssl
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_ltx2 import defaults
from airflow_provider_ltx2.api.calls import Call, auth_headers, poll_call, submit_call
from airflow_provider_ltx2.api.connection import (
    Gateway,
    SpendCaps,
    first_private_address,
    gateway_from_connection,
    spend_caps_from_extra,
    tls_refusal,
)
from airflow_provider_ltx2.api.jobs import Job, JobStatus, parse_status, parse_submission
from airflow_provider_ltx2.api.redaction import hide_signed_urls
from airflow_provider_ltx2.api.replies import Reply, TransportFailure, error_for_reply, gateway_message
from airflow_provider_ltx2.api.retries import Attempts, RetryPolicy
from airflow_provider_ltx2.exceptions import (
    Ltx2ConnectionNotFound,
    Ltx2Error,
    Ltx2HttpError,
    Ltx2Timeout,
    Ltx2TransientError,
    Ltx2ValidationError,
)
from airflow_provider_ltx2.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    import aiohttp
    import requests

CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS_PER_LOOP = 100
READ_TIMEOUT = 60.0
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
KEY_CHECK_SECONDS = 30.0
IMAGE_READ_SECONDS = 120.0  # a whole image read, at most (a 50 MiB image at ~4 Mbit/s)
VIDEO_READ_SECONDS = 1800.0  # a whole video download, at most
MAX_REDIRECTS = 5
GATEWAY_CACHE_SECONDS = 30.0


@dataclass
class _SharedPool:
    """The connection pool the triggers of one event loop share, and how many of them use it."""

    connector: aiohttp.TCPConnector
    users: int = 0


@contextmanager
def _looked_up(conn_id: str) -> Iterator[None]:
    """A connection that is not defined is the provider's error (the task's failure handling reports it, in the
    worker and through a trigger's error event alike), not Airflow's bare ``AirflowNotFoundException``."""
    from airflow.exceptions import AirflowNotFoundException  # the Task SDK's own class on Airflow 3

    try:
        yield
    except AirflowNotFoundException:
        raise Ltx2ConnectionNotFound(
            f"The LTX-2 connection {conn_id!r} is not defined (deleted or renamed?): nothing was sent to the gateway. "
            "Define it again and clear the task: on Airflow 3.3+ a retry reattaches to a job already paid for."
        ) from None


@dataclass(frozen=True)
class _Route:
    """A connection as a trigger's calls use it: the gateway, and how calls travel there (proxy, TLS).

    Decided once per lookup, not per trigger: the proxy decision alone scans the environment three times.
    """

    gateway: Gateway
    proxy: str | None
    tls: ssl.SSLContext | bool


@dataclass(frozen=True)
class _AsyncClient:
    """What a trigger's calls use, decided once in ``aconnect``: the session, the route, headers and timeout."""

    session: aiohttp.ClientSession
    route: _Route
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout


_SHARED_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedPool] = weakref.WeakKeyDictionary()
# Connection lookups of the triggers of one event loop, by connection id: (valid until, the lookup). The lookup
# is a task that every trigger starting meanwhile awaits, so triggers that start together look it up once.
_RouteCache = dict[str, tuple[float, "asyncio.Task[_Route]"]]
_ROUTES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _RouteCache] = weakref.WeakKeyDictionary()


class Ltx2Hook(BaseHook):
    """Talks to the LTX-2 gateway with the subscription key of an ``ltx2`` connection.

    :param ltx2_conn_id: connection holding the key (password) and optionally the base URL (host).
    :param retry_policy: how transient errors (429, 5xx, no connection) are retried.
    """

    conn_name_attr = "ltx2_conn_id"
    default_conn_name = defaults.CONN_ID
    conn_type = "ltx2"
    hook_name = "LTX-2 (Pixazo gateway)"

    def __init__(
        self,
        ltx2_conn_id: str = default_conn_name,
        retry_policy: RetryPolicy | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        super().__init__()
        self.ltx2_conn_id = ltx2_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self.read_timeout = read_timeout
        self._async_client: _AsyncClient | None = None
        self._resolved: dict[str, list[str]] = {}

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form on Airflow 2.11 (3.2+ reads it from ``get_provider_info``).

        Airflow 2 wants snake_case keys here, not the provider-info kebab-case: it drops the whole form
        with a warning when ``hidden_fields`` is missing.
        """
        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The labelled extras on Airflow 2.11's form (3.2+ reads ``conn-fields`` from ``get_provider_info``)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from wtforms import StringField

        return {
            name: StringField(field["label"], widget=BS3TextFieldWidget(), description=field["description"])
            for name, field in CONN_FIELDS.items()
        }

    # ---------------------------------------------------------------------------------- credentials

    @cached_property
    def _connection(self) -> Any:
        with _looked_up(self.ltx2_conn_id):
            return self.get_connection(self.ltx2_conn_id)

    @cached_property
    def gateway(self) -> Gateway:
        conn = self._connection
        return self._checked(gateway_from_connection(self.ltx2_conn_id, conn.host, conn.password, conn.extra_dejson))

    @cached_property
    def spend_caps(self) -> SpendCaps:
        """The key's spend caps and ledger (the connection's extras): read by paying tasks only, so a broken cap
        fails what would pay, not a sensor or a trigger."""
        return spend_caps_from_extra(self.ltx2_conn_id, self._connection.extra_dejson)

    def _checked(self, gateway: Gateway) -> Gateway:
        if gateway.network.verify is False:
            self.log.warning(
                "TLS verification is off for connection %r (extra verify=false): the gateway's certificate, and "
                "with it where the subscription key goes, is not checked. Set verify to a CA bundle instead.",
                self.ltx2_conn_id,
            )
        return gateway

    # ---------------------------------------------------------------------------------- sync side

    @cached_property
    def _session(self) -> requests.Session:
        """One session for the gateway and the video's host, with the connection's network settings.

        Written here rather than taken from providers-http's ``HttpHook``: that hook's retries would
        resend a paid submit, and its extras parsing is private. The extras keep its meaning
        (``api.connection.network_from_extra``); requests itself honours the environment's proxies and CA bundle.
        """
        import requests

        network = self.gateway.network
        session = requests.Session()
        session.verify = network.ca_file() or network.verify
        session.cert = network.cert
        session.proxies.update(dict(network.proxies))
        return session

    @property
    def _session_settings(self) -> dict[str, Any]:
        """The session's ``verify`` and ``proxies``, passed with every request: requests lets
        ``REQUESTS_CA_BUNDLE`` and ``HTTP(S)_PROXY`` override a session's settings but not a request's, and
        the connection's extras must win, as they do in the triggerer and in providers-http's ``HttpHook``.
        """
        return {"verify": self._session.verify, "proxies": self._session.proxies}

    def _send(self, call: Call, hidden: tuple[str, ...] = ()) -> Reply | TransportFailure:
        """One HTTP exchange; the key and the ``hidden`` values (a signed image URL) never leave in a reply.

        Redirects are not followed: requests would carry the key's header to wherever one points.
        """
        import requests

        redactor = self.gateway.redactor(*hidden)
        try:
            response = self._session.request(
                call.method,
                call.url,
                json=call.json_body,
                headers=auth_headers(self.gateway.key),
                timeout=(CONNECT_TIMEOUT, self.read_timeout),
                allow_redirects=False,
                **self._session_settings,
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            detail = f"{type(error).__name__}: {error}"
            untrusted = isinstance(error, requests.exceptions.SSLError)
            if untrusted:
                detail = tls_refusal(self.gateway.base_url, error)
            return TransportFailure(redactor.text(detail), _never_sent(error), untrusted)
        return Reply.received(response.status_code, response.text, response.headers.get("Retry-After"), redactor)

    def _call(
        self,
        call: Call,
        *,
        action: str,
        paid: bool = False,
        deadline: float | None = None,
        hidden: tuple[str, ...] = (),
    ) -> Reply:
        attempts = Attempts(self.retry_policy, paid=paid, action=action, deadline=deadline)
        while (delay := attempts.next_delay(outcome := self._send(call, hidden))) is not None:
            self.log.warning("%s; retrying in %.1fs", attempts.describe(outcome), delay)
            time.sleep(delay)
        return attempts.result(outcome)

    def submit(self, body: dict[str, Any], hidden: tuple[str, ...] = ()) -> Job:
        """Submit one generation (a paid call). ``body`` comes from ``api.build_request``.

        ``hidden``: values of the body that are credentials (a signed image URL), kept out of every error.
        """
        reply = self._call(submit_call(self.gateway.base_url, body), action="submit", paid=True, hidden=hidden)
        return parse_submission(reply, self.gateway.base_url)

    def get_status(self, job: Job, deadline: float | None = None) -> JobStatus:
        """Ask once (retrying transient errors, never past ``deadline``) how the generation is doing."""
        reply = self._call(poll_call(self.gateway.base_url, job), action="status poll", deadline=deadline)
        return parse_status(reply)

    def test_connection(self) -> tuple[bool, str]:
        """Check the key for free: a result call for a made-up id is a JSON 404 with a good key, 401 without; and
        the spend extras, which would otherwise fail only the first paying task."""
        try:
            caps = self.spend_caps
            reply = self._call(
                poll_call(self.gateway.base_url, Job(f"connection-test-{uuid.uuid4().hex}")),
                action="key check",
                deadline=time.time() + KEY_CHECK_SECONDS,  # a throttled gateway must not hold the form
            )
        except Ltx2Error as error:
            return False, str(error)
        if reply.status in (401, 402, 403):
            return False, str(error_for_reply(reply, "the key check"))
        if reply.status == 404 and isinstance(reply.json(), dict):
            guard = f" Spend ledger: {caps.ledger_uri}." if caps.ledger_uri else ""
            return True, f"The LTX-2 gateway at {self.gateway.base_url} accepted the subscription key.{guard}"
        answer = f"HTTP {reply.status} {gateway_message(reply)}"
        return False, f"{self.gateway.base_url} does not answer like the LTX-2 gateway: {answer}"

    # ---------------------------------------------------------------------------------- other hosts

    @cached_property
    def gateway_is_private(self) -> bool:
        """Whether the gateway itself is on a private address (the simulator on loopback, a gateway in the same
        network): then images and videos on private addresses are ones it can fetch too."""
        host = urlsplit(self.gateway.base_url).hostname or ""
        return first_private_address(_addresses(host)) is not None

    def check_fetchable(self, url: str, what: str) -> None:
        """Refuse, before any byte is read, a URL the gateway could not fetch: one whose host resolves to a
        private address while the gateway is public.

        Such a URL can only be a mistake or a probe of the worker's network (a loopback service, a cloud's
        metadata address); sent to the gateway it could only fail, after paying. A host this worker cannot
        resolve is left to the request (a proxy may resolve it). The request resolves the name again: a DNS
        answer that changes in between is not caught here.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Ltx2ValidationError(f"{what.capitalize()} {hide_signed_urls(url)!r} is not an http(s) URL.")
        if self.gateway_is_private:
            return
        if parts.hostname not in self._resolved:  # once per host and task: a batch names thousands of URLs
            self._resolved[parts.hostname] = _addresses(parts.hostname)
        private = first_private_address(self._resolved[parts.hostname])
        if private is not None:
            raise Ltx2ValidationError(
                f"{what.capitalize()} {hide_signed_urls(url)!r} is on a private address ({parts.hostname} resolves "
                f"to {private}): the LTX-2 gateway {self.gateway.base_url} cannot fetch it, and this worker does not "
                "read it. Accepted values are URLs on public hosts."
            )

    def read_head(self, url: str, size: int, deadline: float | None = None) -> bytes:
        """The first ``size`` bytes of a public URL (an image), fetched without the key, before ``deadline``.

        Raises ``Ltx2HttpError`` for an answer other than 200 or 206, ``Ltx2ValidationError`` for a URL on a
        private address, ``Ltx2Timeout`` past the deadline (or ``IMAGE_READ_SECONDS``).
        """
        head = b""
        for chunk in self._fetch(
            url, "the image", _until(deadline, IMAGE_READ_SECONDS), {"Range": f"bytes=0-{size - 1}"}, size
        ):
            head += chunk
            if len(head) >= size:
                break
        return head[:size]

    def read_image(self, url: str, deadline: float | None = None) -> Iterator[bytes]:
        """A public image's body, chunk by chunk, as ``stream`` reads it, within ``IMAGE_READ_SECONDS``."""
        return self._fetch(url, "the image", _until(deadline, IMAGE_READ_SECONDS))

    def stream(self, url: str, what: str = "the LTX-2 video", deadline: float | None = None) -> Iterator[bytes]:
        """The body of a public URL (the finished video, a public image), chunk by chunk, fetched without the key.

        Raises ``Ltx2HttpError`` for an answer other than 200, ``Ltx2Error`` for a body shorter than its
        ``Content-Length``, ``Ltx2TransientError`` for a transfer that broke (with its reason), ``Ltx2Timeout``
        when the whole read takes past ``deadline`` (or ``VIDEO_READ_SECONDS``), ``Ltx2ValidationError`` for a
        URL (or a redirect) to a private address. Where the bytes go is the caller's business
        (``delivery.save_video`` writes them to object storage); stopping early closes the connection.
        """
        return self._fetch(url, what, _until(deadline, VIDEO_READ_SECONDS))

    def _fetch(
        self,
        url: str,
        what: str,
        until: float,
        headers: dict[str, str] | None = None,
        chunk_size: int = DOWNLOAD_CHUNK_BYTES,
    ) -> Iterator[bytes]:
        """``_fetch_chunks`` run in a thread of its own, so that the task's thread keeps its deadline.

        requests bounds each socket read, not a whole transfer: a host sending a byte every few seconds
        (headers included) would hold the task for hours, deaf to its deadline. The task's thread waits on a
        queue instead, with a timeout, where a signal (SIGTERM, ``execution_timeout``) also reaches it. A read
        given up on is left to end in its daemon thread, which takes nothing more from it.
        """
        chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
        stop = threading.Event()

        def pump() -> None:
            try:
                for chunk in self._fetch_chunks(url, what, headers or {}, chunk_size):
                    while not stop.is_set():
                        try:
                            chunks.put(chunk, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                chunks.put(None)
            except BaseException as error:  # handed to the task's thread, which raises it
                chunks.put(error)

        started = time.time()
        threading.Thread(target=pump, name=f"ltx2-read-{what}", daemon=True).start()
        try:
            while True:
                try:
                    item = chunks.get(timeout=max(0.0, until - time.time()))
                except queue.Empty:
                    raise Ltx2Timeout(
                        f"Reading {what} {hide_signed_urls(url)} did not end within {until - started:.0f}s (the "
                        "task's deadline or the read limit): the host sends too slowly, or not at all."
                    ) from None
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    def _fetch_chunks(self, url: str, what: str, headers: dict[str, str], chunk_size: int) -> Iterator[bytes]:
        """The body of ``url``, following redirects itself so each hop is checked (``check_fetchable``)."""
        import requests

        timeout = (CONNECT_TIMEOUT, self.read_timeout)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                self.check_fetchable(url, what)
                with self._session.get(
                    url, headers=headers, stream=True, timeout=timeout, allow_redirects=False, **self._session_settings
                ) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status_code not in ((200, 206) if "Range" in headers else (200,)):
                        raise Ltx2HttpError(
                            f"Downloading {what} {hide_signed_urls(url)} failed: HTTP {response.status_code}",
                            status=response.status_code,
                        )
                    size = 0
                    for chunk in response.iter_content(chunk_size):
                        size += len(chunk)
                        yield chunk
                    expected = response.headers.get("Content-Length", "")
                    # A length that is not a number is the host's mistake (urllib3 reads to the end then)
                    if "Range" not in headers and expected.isdecimal() and expected.isascii() and int(expected) != size:
                        raise Ltx2Error(f"The download of {what} stopped after {size} of {expected} bytes.")
                    return
        except requests.RequestException as error:
            raise Ltx2TransientError(
                f"Downloading {what} {hide_signed_urls(url)} failed: {hide_signed_urls(str(error))}"
            ) from error
        raise Ltx2Error(f"Downloading {what} {hide_signed_urls(url)} failed: more than {MAX_REDIRECTS} redirects.")

    # ---------------------------------------------------------------------------------- async side

    async def agateway(self) -> Gateway:
        """The gateway as seen from the triggerer, without blocking its event loop."""
        return (await self._aroute()).gateway

    async def _aroute(self) -> _Route:
        """The connection's route, looked up once for all the triggers of this event loop.

        In a triggerer a lookup is a round trip to its supervisor and a DB or secrets-backend query, and a
        mapped batch or a restarted triggerer starts hundreds of triggers at once: they all await one lookup,
        kept for ``GATEWAY_CACHE_SECONDS``. A trigger keeps its gateway for its whole run anyway, so a rotated
        key reaches triggers started at most that much later than without the cache. A failed lookup reaches
        every trigger awaiting it and is not kept.
        """
        loop = asyncio.get_running_loop()
        cache = _ROUTES.setdefault(loop, {})
        entry = cache.get(self.ltx2_conn_id)
        if entry is None or entry[0] <= time.monotonic():
            lookup = loop.create_task(self._alookup())
            entry = cache[self.ltx2_conn_id] = (time.monotonic() + GATEWAY_CACHE_SECONDS, lookup)
            lookup.add_done_callback(functools.partial(_drop_failed_lookup, cache, self.ltx2_conn_id))
        return await asyncio.shield(entry[1])

    async def _alookup(self) -> _Route:
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        with _looked_up(self.ltx2_conn_id):
            conn = await get_async_connection(self.ltx2_conn_id, hook=self)
        extra = await get_async_extra_dejson(conn)
        gateway = gateway_from_connection(self.ltx2_conn_id, conn.host, conn.password, extra)
        # The extras, else HTTPS_PROXY/HTTP_PROXY/NO_PROXY and the CA variables, as requests decides them in the
        # worker: aiohttp's trust_env would look the environment up again on every call.
        network = gateway.network
        tls = _ssl_context(network.verify is False, network.ca_file(), network.cert)
        return _Route(gateway, network.proxy_for(gateway.base_url), tls)

    @asynccontextmanager
    async def aconnect(self) -> AsyncIterator[Gateway]:
        """Resolve the connection once and hold one session for every call of a trigger's life.

        A triggerer runs thousands of triggers in one event loop: their sessions share one pool of
        kept-alive connections per loop, which spares each of them a connection set-up and its own
        pool, and caps how many connections the loop opens to the gateway at once. The pool closes
        with its last user.
        """
        import aiohttp

        route = await self._aroute()
        self._checked(route.gateway)  # warned by every trigger, cached lookup or not
        loop = asyncio.get_running_loop()
        pool = _SHARED_POOLS.get(loop)
        if pool is None or pool.connector.closed:
            pool = _SHARED_POOLS[loop] = _SharedPool(aiohttp.TCPConnector(limit=MAX_CONNECTIONS_PER_LOOP))
        pool.users += 1
        try:
            async with aiohttp.ClientSession(connector=pool.connector, connector_owner=False) as session:
                timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, total=self.read_timeout)
                self._async_client = _AsyncClient(session, route, auth_headers(route.gateway.key), timeout)
                yield route.gateway
        finally:
            self._async_client = None
            pool.users -= 1
            if pool.users == 0:
                if _SHARED_POOLS.get(loop) is pool:
                    del _SHARED_POOLS[loop]
                await pool.connector.close()

    @property
    def _connected(self) -> _AsyncClient:
        if self._async_client is None:
            raise RuntimeError("Ltx2Hook's async calls run inside `async with hook.aconnect():`")
        return self._async_client

    async def _asend(self, call: Call) -> Reply | TransportFailure:
        import aiohttp

        client = self._connected
        route = client.route
        gateway = route.gateway
        try:
            async with client.session.request(
                call.method,
                call.url,
                json=call.json_body,
                headers=client.headers,
                timeout=client.timeout,
                ssl=route.tls,
                proxy=route.proxy,  # calls go to the gateway's host only (polling URLs are kept on it)
                allow_redirects=False,  # aiohttp would carry the key's header to wherever a redirect points
            ) as response:
                text = await response.text(errors="replace")
                return Reply.received(response.status, text, response.headers.get("Retry-After"), gateway.redactor())
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            detail = f"{type(error).__name__}: {error}"
            untrusted = isinstance(error, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError))
            if untrusted:
                detail = tls_refusal(gateway.base_url, error)
            # A connection, TLS handshake or proxy that never opened sent nothing.
            never_sent = isinstance(error, (aiohttp.ClientConnectorError, aiohttp.ClientProxyConnectionError))
            return TransportFailure(gateway.redactor().text(detail), never_sent, untrusted)

    async def _acall(self, call: Call, *, action: str, paid: bool = False, deadline: float | None = None) -> Reply:
        """The async twin of ``_call``: the same ``Attempts`` decide every retry."""
        attempts = Attempts(self.retry_policy, paid=paid, action=action, deadline=deadline)
        while (delay := attempts.next_delay(outcome := await self._asend(call))) is not None:
            self.log.warning("%s; retrying in %.1fs", attempts.describe(outcome), delay)
            await asyncio.sleep(delay)
        return attempts.result(outcome)

    async def aget_status(self, job: Job, deadline: float | None = None) -> JobStatus:
        """The async twin of ``get_status``: same call, same retries, same reading of the reply."""
        call = poll_call(self._connected.route.gateway.base_url, job)
        return parse_status(await self._acall(call, action="status poll", deadline=deadline))


@functools.lru_cache(maxsize=32)
def _ssl_context(off: bool, ca_file: str | None, cert: str | tuple[str, str] | None) -> ssl.SSLContext | bool:
    """The TLS settings for aiohttp, made once per setting: loading a CA bundle costs milliseconds.

    ``True`` keeps aiohttp's own default context; a CA bundle (``verify`` or the environment's, as
    requests reads it) or a client certificate get a context of their own; ``verify=false`` none.
    """
    if off:
        return False
    if ca_file is None and cert is None:
        return True
    context = ssl.create_default_context(cafile=ca_file)
    if cert is not None:
        certificate, key = cert if isinstance(cert, tuple) else (cert, None)
        context.load_cert_chain(certificate, key)
    return context


def _drop_failed_lookup(
    cache: dict[str, tuple[float, asyncio.Task[_Route]]], conn_id: str, lookup: asyncio.Task[_Route]
) -> None:
    """A lookup that failed is not kept: the next trigger looks the connection up anew."""
    if lookup.cancelled() or lookup.exception() is not None:
        entry = cache.get(conn_id)
        if entry is not None and entry[1] is lookup:
            del cache[conn_id]


def _until(deadline: float | None, most: float) -> float:
    """When a read must have ended: the task's deadline, and never later than ``most`` seconds from now."""
    bound = time.time() + most
    return bound if deadline is None else min(deadline, bound)


def _addresses(host: str) -> list[str]:
    """The addresses ``host`` resolves to here; none when it does not resolve (a proxy may)."""
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]
    except (OSError, UnicodeError):
        return []


def _never_sent(error: Exception) -> bool:
    """Whether a requests error surely happened before the request left: no connection, TLS or proxy refusal."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(error, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError)
