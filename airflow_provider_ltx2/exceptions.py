"""The provider's errors: one base class, and a subclass per thing a DAG author reacts to differently.

Errors that retrying cannot fix (bad input, a rejected key, input the model refused) also derive from
``AirflowFailException``, so Airflow fails the task at once instead of paying for retries.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class Ltx2Error(AirflowException):
    """Base class of every error this provider raises."""


class Ltx2ValidationError(Ltx2Error, AirflowFailException, ValueError):
    """A request field (or an operator argument) has a value the gateway does not accept."""


class Ltx2AuthError(Ltx2Error, AirflowFailException):
    """The gateway refused the subscription key (401/403) or the account has no balance (402)."""


class Ltx2ConnectionNotFound(Ltx2Error):
    """The ``ltx2`` connection is not defined (or was deleted while the task waited): nothing was sent.

    Retried as Airflow retries: once the connection is back, a retry reattaches to a job already paid for.
    """


class Ltx2GenerationFailed(Ltx2Error):
    """The gateway reported the generation as failed, or the request is unknown to it."""


class Ltx2InputRejected(Ltx2GenerationFailed, AirflowFailException):
    """The model rejected the input (e.g. an image it cannot read): retrying would fail the same way."""


class Ltx2SubmitUnconfirmed(Ltx2Error, AirflowFailException):
    """The submit may have been accepted (and charged) but no answer confirmed it: not resent, not retried."""


class Ltx2HttpError(Ltx2Error):
    """A URL the task reads (the finished video, a public image) answered with an HTTP error ``status``."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class Ltx2BudgetExceeded(Ltx2Error, AirflowFailException):
    """Nothing was paid: a batch's rows still to generate cost more than its ``max_cost_usd``, or the task's
    reservation would take the key's spend today or this month past the connection's cap (``spend``)."""


class Ltx2BatchFailed(Ltx2GenerationFailed, AirflowFailException):
    """More rows of a batch failed than its ``max_failed_items`` allows; its videos and manifest are kept.

    Not retried: a retry would pay again for the failed rows. Clear the task to try them anew.
    """


class Ltx2Timeout(Ltx2Error):
    """The video was not ready before the deadline."""


class Ltx2TransientError(Ltx2Error):
    """The gateway kept answering with errors that are usually temporary (429, 5xx, no connection)."""


class Ltx2Throttled(Ltx2TransientError):
    """The gateway is full or rate-limited the call (429, or 503 with ``Retry-After``); nothing was created.

    ``reason`` names the limit (``429 concurrency_limit_error``); ``retry_after`` is the gateway's own
    ``Retry-After`` in seconds, when it sent one. A task meeting this waits for capacity instead of failing.
    """

    def __init__(self, message: str, *, reason: str = "429", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class Ltx2TlsError(Ltx2Error, AirflowFailException):
    """The gateway's TLS certificate was not trusted: nothing was sent; the connection's ``verify`` needs fixing."""
