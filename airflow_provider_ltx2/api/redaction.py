"""Keeping the key and signed URLs out of anything built from what the gateway or a network library said.

The gateway's replies are data: it may echo the request (with the signed image URL) or the key, escaped as
its JSON library escapes text (``\\u0026`` for ``&`` as Go does, ``\\/`` for ``/`` as PHP does, ``\\u00e9``
for a non-ASCII character). A plain text replacement on the raw body misses each of those, so a JSON reply
is decoded first and its strings redacted (``Reply.received``), and any other text is searched for every
escaped form.

Two kinds of secret are hidden: the ones the caller knows (the key, the signed URL it just made), wherever
they appear; and any signed URL it does not know (a poll cannot know the signed URL its submit used), by its
signature parameters, in every message. A signed URL's query is the credential: its host and path stay.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """What finds a signed URL: compiled on first use, not when a DAG file imports the hook (half a millisecond).

    A URL, in plain or JSON-escaped text (``https:\\/\\/``), up to what ends a token in text, JSON or HTML; the
    query parameters that make it a credential (S3/R2 and GCS presigning, Azure SAS, CloudFront, tokens), each
    matched as a whole name after "?", "&" or ";" (``&amp;``) or their escapes; where its query starts.
    """
    url = re.compile(r"(?i)\bhttps?:(?:\\?/){2}[^\s\"'<>]+")
    signature = re.compile(
        r"(?i)(?:[?&;]|%26|%3f|\\u0026|\\u003f)"
        r"(?:x-amz-(?:signature|credential|security-token)|x-goog-(?:signature|credential)|signature|sig|"
        r"googleaccessid|key-pair-id|policy|token|access_token|se|sp|sv)(?:=|%3d|\\u003d)"
    )
    return url, signature, re.compile(r"(?i)\?|%3f|\\u003f")


def hide_signed_urls(text: str) -> str:
    """``text`` with the query of every URL that carries a signature replaced by ``***``."""
    if "http" not in text.lower():  # the common case: a message with no URL at all
        return text
    return _patterns()[0].sub(_without_signature, text)


def _without_signature(match: re.Match[str]) -> str:
    url = match.group(0)
    _, signature, query_start = _patterns()
    query = query_start.search(url)
    if query is None or not signature.search(url, query.start()):
        return url
    return url[: query.start()] + "?" + MASK


def _escaped_forms(secret: str) -> Iterator[str]:
    """``secret`` as the libraries that may echo it write it: JSON (ASCII-only or not, ``\\/``, Go's
    ``\\u0026``), HTML, percent-encoding."""
    for ascii_only in (True, False):
        encoded = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        yield encoded
        yield encoded.replace("/", "\\/")
        go = encoded.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
        yield go
        yield go.replace("/", "\\/")
    yield secret
    yield html.escape(secret)
    yield quote(secret, safe="")
    yield quote_plus(secret, safe="")


class Redactor:
    """Hides ``secrets`` (the key, a signed URL the caller made) in any escaping, and any signed URL.

    A plain class, not a dataclass: this module is imported when a DAG file is parsed.
    """

    __slots__ = ("_pattern", "secrets")

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = secrets
        forms = {form for secret in secrets if secret for form in _escaped_forms(secret) if form}
        # Longest first, so a secret's escaped form is replaced whole, not a shorter form inside it; hex escapes
        # may be written in either case (\u00E9), so the match ignores case: hiding too much is the safe side.
        alternatives = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
        self._pattern = re.compile(alternatives, re.IGNORECASE) if alternatives else None

    def text(self, text: str) -> str:
        """Any text (an exception's, a non-JSON body, a message): the known secrets and signed URLs hidden."""
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return hide_signed_urls(text)

    def value(self, value: Any) -> Any:
        """A decoded JSON value with the known secrets hidden in every string, keys included.

        Unknown signed URLs are left to the messages (``text``): a reply's video URL is the product, which
        the task downloads, even when its host signs it.
        """
        if isinstance(value, str):
            return self._pattern.sub(MASK, value) if self._pattern is not None else value
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self.value(key): self.value(item) for key, item in value.items()}
        return value
