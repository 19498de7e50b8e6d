"""Inputs and outputs where data teams keep them: private images in object storage, files written in
place, and the sidecar.

An image given as an object-storage URI (``s3://``, ``gs://``, ``abfs://``...) is sent to the gateway as a
short-lived signed https URL made by the store itself (``ObjectStoragePath.sign``). The signed URL is a
credential: only ``ImageInput.url_for_gateway`` ever returns it, and every record (XCom, logs, the
sidecar, errors) carries the original URI instead.

The sidecar ``<output_uri>.json`` is written next to a downloaded MP4: what was asked for (with a
fingerprint of the request and of the image it used), what came back, and the MP4's size and sha256.
A rerun whose request has the same fingerprint, and whose MP4 still matches the sidecar, reuses it
instead of paying again (Airflow's practice: a task run twice for the same inputs does the work once).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from airflow_provider_ltx2 import defaults
from airflow_provider_ltx2.api.connection import TRUST_FIX, untrusted_certificate
from airflow_provider_ltx2.api.media import image_kind
from airflow_provider_ltx2.api.request import SHOWN_URI_CHARACTERS, is_public_url, shorten
from airflow_provider_ltx2.contract import PRICE_PER_VIDEO_USD
from airflow_provider_ltx2.exceptions import Ltx2Error, Ltx2HttpError, Ltx2ValidationError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

HEAD_BYTES = 16  # enough for the JPEG and PNG signatures
HASH_CHUNK_BYTES = 1024 * 1024
MAX_IMAGE_BYTES = 50 << 20  # a bound, so a wrong URL (a video, an archive) is not read whole to identify it
SIDECAR_SUFFIX = ".json"
PARTIAL_SUFFIX = ".part"
SIDECAR_VERSION = 1


def _path(uri: str, conn_id: str | None) -> ObjectStoragePath:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    return ObjectStoragePath(uri, conn_id=conn_id)


@dataclass(frozen=True)
class ImageInput:
    """The task's image: the URI as given, what identifies its content, and how the gateway gets it.

    ``head``: the image's first bytes when they were read while identifying it, so the check reads nothing
    more. ``identified``: its identity is settled (read from the store, from its bytes, or given up on as
    unreadable), so nothing reads it again to identify it.
    """

    uri: str
    conn_id: str | None = None
    identity: Mapping[str, Any] = field(default_factory=dict)
    expires_in: int = defaults.IMAGE_URL_EXPIRES_IN
    head: bytes | None = None
    identified: bool = False

    @property
    def private(self) -> bool:
        return not is_public_url(self.uri)

    def url_for_gateway(self) -> str:
        """The URL the gateway fetches: the public URL, or a signed URL made now (never store or log it)."""
        if not self.private:
            return self.uri
        try:
            return str(_path(self.uri, self.conn_id).sign(expiration=self.expires_in))
        except NotImplementedError:
            shown = shorten(self.uri, SHOWN_URI_CHARACTERS)
            raise Ltx2ValidationError(
                f"Invalid LTX-2 request field image_url={shown}: the gateway cannot read it, and this "
                "store cannot make a signed URL for it. Accepted values are a public http(s) URL, or an object-storage "
                "URI whose store can sign URLs (s3://, gs://, ...); copy local files there first."
            ) from None


def image_input(uri: str, conn_id: str | None, expires_in: int) -> ImageInput:
    """Identify an object-storage image by its URI, size and ETag or modification time; a public URL is
    known by its URL until ``identified_by_content`` reads it. No gateway call."""
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or not 60 <= expires_in <= 7 * 24 * 3600:
        raise Ltx2ValidationError(
            f"image_url_expires_in={expires_in!r}: accepted values are whole seconds from 60 to 604800 (7 days)."
        )
    if is_public_url(uri):
        return ImageInput(uri, conn_id, {"url": uri}, expires_in)
    path = _path(uri, conn_id)
    try:
        info = path.fs.info(path.path)
    except FileNotFoundError:
        raise _bad_image(uri, "not found", skippable=False) from None
    except OSError as error:
        raise _bad_image(uri, f"cannot be read ({type(error).__name__}: {error})", skippable=False) from None
    identity: dict[str, Any] = {"uri": uri, "size": info.get("size")}
    version = next((info[key] for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified") if info.get(key)), None)
    if version is not None:
        identity["version"] = str(version)
    return ImageInput(uri, conn_id, identity, expires_in, identified=True)


def identified_by_content(image: ImageInput, read: Callable[[str], Iterable[bytes]]) -> ImageInput:
    """A public image identified by its bytes' sha256 and size, read once without the key.

    A product photo replaced at the same URL is a new image: a URL alone would hand back the old video.
    The bytes are hashed rather than trusting an ``ETag``, which some hosts omit or derive from the path.
    ``read(url)`` yields the body (the hook's ``stream``); its first bytes are kept for the image check.
    Raises ``Ltx2ValidationError`` when the image cannot be fetched or is larger than the gateway accepts.
    """
    import hashlib

    if image.private or image.identified:
        return image
    digest, size, head = hashlib.sha256(), 0, b""
    with _fetching(image.uri):
        for chunk in read(image.uri):
            head += chunk[: HEAD_BYTES - len(head)]
            size += len(chunk)
            if size > MAX_IMAGE_BYTES:
                raise _bad_image(image.uri, f"larger than {MAX_IMAGE_BYTES >> 20} MiB")
            digest.update(chunk)
    identity = {"url": image.uri, "sha256": digest.hexdigest(), "size": size}
    return replace(image, identity=identity, head=head, identified=True)


@contextmanager
def _fetching(uri: str) -> Iterator[None]:
    """A public image's read errors as the ``Ltx2ValidationError`` that names it and says why (an HTTP status,
    a refused certificate, a host too slow); one that already names it (a private address) as it is."""
    try:
        yield
    except Ltx2HttpError as error:
        raise _bad_image(uri, _http_problem(error.status)) from None
    except Ltx2ValidationError:
        raise
    except Ltx2Error as error:
        raise _bad_image(uri, _fetch_problem(error, str(error))) from None


def _fetch_problem(error: BaseException, detail: str) -> str:
    """Why a public image could not be fetched; a certificate the worker does not trust says why and what fixes it."""
    refused = untrusted_certificate(error)
    if refused is None:
        return f"cannot be fetched ({detail})"
    return f"cannot be fetched: its TLS certificate was not trusted ({refused}); to trust it, {TRUST_FIX}"


def _http_problem(status: int) -> str:
    return "not found (HTTP 404)" if status == 404 else f"HTTP {status}"


def _bad_image(uri: str, problem: str, skippable: bool = True) -> Ltx2ValidationError:
    """The error for an unusable image; ``skippable`` when ``check_image=False`` would not have met it."""
    hint = " (check_image=False skips this check for images only the gateway can reach)" if skippable else ""
    shown = shorten(uri, SHOWN_URI_CHARACTERS)
    return Ltx2ValidationError(
        f"Invalid LTX-2 request field image_url={shown}: {problem}. Accepted values are a reachable JPEG or "
        f"PNG image{hint}."
    )


def check_image(image: ImageInput, read_head: Callable[[str, int], bytes]) -> None:
    """Read the image's first bytes and fail before paying if it is missing, empty, or no JPEG or PNG.

    ``read_head(url, size)`` fetches a public URL's first bytes (the hook's, without the key), raising
    ``Ltx2HttpError`` for an HTTP error.
    """
    if image.head is not None:
        head = image.head
    elif image.private:
        try:
            with _path(image.uri, image.conn_id).open("rb", block_size=HEAD_BYTES) as source:  # not a 50 MiB block
                head = source.read(HEAD_BYTES)
        except FileNotFoundError:
            raise _bad_image(image.uri, "not found") from None
        except OSError as error:
            raise _bad_image(image.uri, f"cannot be read ({type(error).__name__})") from None
    else:
        with _fetching(image.uri):
            head = read_head(image.uri, HEAD_BYTES)
    if not head:
        raise _bad_image(image.uri, "empty")
    if image_kind(head) is None:
        raise _bad_image(image.uri, "not a JPEG or PNG (by its first bytes)")


def check_gateway_can_fetch(image: ImageInput, check_host: Callable[[str, str], None]) -> None:
    """Fail before paying on an image the gateway could never fetch, without reading a byte of it.

    A private URI must be one its store can sign (a ``file://`` path cannot be); a public URL's host must
    be one the gateway can reach (``check_host(url, what)``, the hook's ``check_fetchable``: no private
    address when the gateway is public). ``check_image=False`` skips reading the image, not this.
    """
    if image.private:
        image.url_for_gateway()  # signed here and dropped: only the submit's own is sent
    else:
        check_host(image.uri, "the image")


def fingerprint(request: Mapping[str, Any], image: ImageInput) -> str:
    """What makes two generations the same: the request as recorded and the identity of its image."""
    import hashlib

    canonical = json.dumps({"request": dict(request), "image": dict(image.identity)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# The sidecar: <output_uri>.json, the catalogue entry of a downloaded video.
# --------------------------------------------------------------------------------------------------


def sidecar_uri(output_uri: str) -> str:
    return output_uri + SIDECAR_SUFFIX


def sidecar(
    result: Mapping[str, Any], fingerprint_: str | None, sha256: str, batch: str | None = None
) -> dict[str, Any]:
    """The sidecar's fields, from the task's result dict (``request`` carries the original image URI).

    ``batch``: the token of the batch run that made the video (its manifest tells made from reused by it).
    """
    made_by = {} if batch is None else {"batch": batch}
    return {
        **made_by,
        "version": SIDECAR_VERSION,
        "fingerprint": fingerprint_,
        "request_id": result["request_id"],
        "request": result["request"],
        "video_url": result["video_url"],
        "output_uri": result["output_uri"],
        "bytes": result["bytes"],
        "sha256": sha256,
        "submitted_at": result["submitted_at"],
        "completed_at": result["completed_at"],
        "price_usd": PRICE_PER_VIDEO_USD,
    }


@contextmanager
def written_in_place(target: ObjectStoragePath, clear_stale: bool = True) -> Iterator[ObjectStoragePath]:
    """A hidden temporary sibling of ``target`` to write; moved onto ``target`` only if the block completes.

    So a reader never sees a partial file at ``target``, and an earlier one stays until replaced. On
    failure the sibling is removed; a writer killed outright cannot do that, so each write first clears
    what a killed one left behind. That costs a listing of the folder: a batch, which writes thousands of
    files into one folder, passes ``clear_stale=False`` and clears the folder once per try instead
    (``clear_partials``).
    """
    if clear_stale:
        _remove(target.parent.glob(f".{target.name}.*{PARTIAL_SUFFIX}"))
    partial = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}"
    try:
        yield partial
        partial.move(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def clear_partials(folder_uri: str, conn_id: str | None, names: Container[str]) -> None:
    """Remove what writers of the files ``names`` killed mid-write left in a folder, with one listing.

    Only those files' partials: another task writing other files into the same folder keeps its own.
    """
    partials = _path(folder_uri, conn_id).glob(f".*{PARTIAL_SUFFIX}")
    _remove(stale for stale in partials if stale.name[1:].rsplit(".", 2)[0] in names)


def _remove(paths: Iterable[ObjectStoragePath]) -> None:
    for stale in paths:
        stale.unlink(missing_ok=True)


def write_file(uri: str, conn_id: str | None, chunks: Iterable[bytes], clear_stale: bool = True) -> None:
    """Write ``chunks`` to ``uri``, in place only once all of them are written (a local folder is made)."""
    target = _path(uri, conn_id)
    if target.protocol in ("file", "local"):
        target.parent.mkdir(parents=True, exist_ok=True)
    with written_in_place(target, clear_stale) as partial, partial.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)


def write_sidecar(output_uri: str, conn_id: str | None, fields: Mapping[str, Any], clear_stale: bool = True) -> None:
    """Write the sidecar next to the MP4, in place only once whole, as the MP4."""
    target = _path(sidecar_uri(output_uri), conn_id)
    with written_in_place(target, clear_stale) as partial, partial.open("w") as out:
        out.write(json.dumps(fields, indent=2, sort_keys=True))  # one write: each goes through fsspec's wrapper


def read_sidecar(output_uri: str, conn_id: str | None) -> dict[str, Any] | None:
    """The sidecar next to ``output_uri`` as written (not checked against the MP4), or None."""
    try:
        with _path(sidecar_uri(output_uri), conn_id).open("r") as source:
            saved = json.load(source)
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def reusable(output_uri: str, conn_id: str | None, fingerprint_: str) -> dict[str, Any] | None:
    """The sidecar of an earlier run that made this very video, if the MP4 is still the one it describes.

    Anything else (no sidecar, a damaged one, another fingerprint, an MP4 of another size or content)
    is None: the task generates anew.
    """
    import hashlib

    saved = read_sidecar(output_uri, conn_id)
    if saved is None or saved.get("fingerprint") != fingerprint_:
        return None
    try:
        video = _path(output_uri, conn_id)
        if video.size() != saved.get("bytes"):
            return None
        digest = hashlib.sha256()
        with video.open("rb") as content:
            while chunk := content.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
    except (OSError, ValueError):
        return None
    return saved if digest.hexdigest() == saved.get("sha256") else None


# --------------------------------------------------------------------------------------------------
# Allowed image folders: the private images a table's row may have the worker sign.
# --------------------------------------------------------------------------------------------------

UNPLAIN_MARKS = ("%", "\\", "?", "#", "::")  # escapes, Windows separators, query, fragment, fsspec chains
PLAINLY = "no '.', '..' or empty path segments, and no '%', '\\', '::', '?', '#' or whitespace"  # in the errors' words


class PlainUri:
    """An object-storage URI as written: its scheme (lower case), location (the bucket) and path segments.

    A plain class, not a dataclass: this module is imported when a DAG file is parsed, where making a
    dataclass costs half a millisecond.
    """

    __slots__ = ("location", "scheme", "segments")

    def __init__(self, scheme: str, location: str, segments: tuple[str, ...]) -> None:
        self.scheme = scheme
        self.location = location
        self.segments = segments

    def holds(self, other: PlainUri) -> bool:
        """Whether ``other`` lies inside this folder: same store and bucket, and these segments then more."""
        depth = len(self.segments)
        same_bucket = (other.scheme, other.location) == (self.scheme, self.location)
        return same_bucket and len(other.segments) > depth and other.segments[:depth] == self.segments


def plain_uri(uri: str) -> PlainUri | None:
    """``uri`` split as written, or None when it is not written plainly.

    Stores and parsers disagree on ``.``, ``..`` and empty segments, percent-escapes, backslashes, queries,
    fragments, fsspec's ``::`` chains and control characters (``urlsplit`` drops tabs and newlines), so a
    URI that leaves a folder in one reading can seem inside it in another: it is refused, never normalised.
    """
    scheme, separator, rest = uri.partition("://")
    if not separator or not (scheme.isascii() and scheme.isalnum()):
        return None
    if any(mark in uri for mark in UNPLAIN_MARKS) or any(char.isspace() or not char.isprintable() for char in uri):
        return None
    location, _, path = rest.partition("/")
    segments = tuple(path.split("/")) if path else ()
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    return PlainUri(scheme.lower(), location, segments)


def folder_uri(prefix: str) -> PlainUri | None:
    """A URI prefix as the folder it names (``s3://media/images`` is ``s3://media/images/``), or None unless it
    is written plainly and names a bucket or a folder (not a whole store such as ``file:///``)."""
    folder = plain_uri(prefix.removesuffix("/"))
    return folder if folder is not None and (folder.location or folder.segments) else None


def lies_under(uri: str, prefixes: Iterable[str]) -> bool:
    """Whether the private image ``uri`` is an object inside one of the folders ``prefixes`` name.

    On a path boundary only: ``s3://media/images`` holds ``s3://media/images/a.jpg``, not
    ``s3://media/images-private/a.jpg``. The scheme matches in any case, the bucket and path exactly.
    """
    image = plain_uri(uri)
    return image is not None and any(folder is not None and folder.holds(image) for folder in map(folder_uri, prefixes))
