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

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"

# A URL, in plain or JSON-escaped text (``https:\/\/``), up to what ends a token in text, JSON or HTML.
_URL = re.compile(r"(?i)\bhttps?:(?:\\?/){2}[^\s\"'<>]+")
# Query parameters that make a URL a credential: S3/R2 and GCS presigning, Azure SAS, CloudFront, tokens.
# Each is matched as a whole parameter name, after "?", "&" or ";" (``&amp;``) or their escapes.
_SIGNATURE = re.compile(
    r"(?i)(?:[?&;]|%26|%3f|\\u0026|\\u003f)"
    r"(?:x-amz-(?:signature|credential|security-token)|x-goog-(?:signature|credential)|signature|sig|"
    r"googleaccessid|key-pair-id|policy|token|access_token|se|sp|sv)(?:=|%3d|\\u003d)"
)
# Where the query starts: a literal "?" or its escapes.
_QUERY = re.compile(r"(?i)\?|%3f|\\u003f")


def hide_signed_urls(text: str) -> str:
    """``text`` with the query of every URL that carries a signature replaced by ``***``."""
    if "http" not in text.lower():  # the common case: a message with no URL at all
        return text
    return _URL.sub(_without_signature, text)


def _without_signature(match: re.Match[str]) -> str:
    url = match.group(0)
    query = _QUERY.search(url)
    if query is None or not _SIGNATURE.search(url, query.start()):
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


@dataclass(frozen=True)
class Redactor:
    """Hides ``secrets`` (the key, a signed URL the caller made) in any escaping, and any signed URL."""

    secrets: tuple[str, ...]
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        forms = {form for secret in self.secrets if secret for form in _escaped_forms(secret) if form}
        # Longest first, so a secret's escaped form is replaced whole, not a shorter form inside it; hex escapes
        # may be written in either case (\u00E9), so the match ignores case: hiding too much is the safe side.
        alternatives = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
        object.__setattr__(self, "_pattern", re.compile(alternatives, re.IGNORECASE) if alternatives else None)

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
