"""Command line entry point: ``python -m airflow_provider_ltx2.simulator`` / ``ltx2-simulator``.

Besides the job timings and protocol, the flags set the gateway's per-key limits
(``--max-concurrent-jobs``, ``--rate-limit-per-minute``; also the ``/_sim/config`` fields
``max_concurrent_jobs`` and ``rate_limit_per_minute``) and https (``--tls-cert`` with ``--tls-key``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path

from airflow_provider_ltx2.simulator import DEFAULT_KEY

EPILOG = """\
At run time POST /_sim/config changes protocol, queue_seconds, processing_seconds,
processing_seconds_max, outcome, video_padding_bytes, response_delay_seconds, render, faults,
max_concurrent_jobs and rate_limit_per_minute; POST /_sim/reset restores the values given here. A fault
({"on", "status", "count", "retry_after", "body", "drop_connection", "probability"}) answers the next
"count" matching requests, or with "probability" p (0 to 1) each matching request with chance p until it
has answered "count" of them: {"on": "poll", "status": 503, "probability": 0.03, "count": 1000000} makes
3% of polls a 503. GET /_sim/stats counts the calls, the 429s the limits answered ("throttled":
{"submit", "poll"}) and each job's start and end ("job_times").
"""


def _limit(text: str) -> int:
    """argparse type of a limit: a whole number >= 0 (0: unlimited)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (0: unlimited), not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltx2-simulator",
        description="Local stand-in for the Pixazo LTX-2 image-to-video gateway.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port to bind; 0 picks a free one (default: 8089)")
    parser.add_argument(
        "--key", default=None, help=f"accepted subscription key (default: $LTX2_SIMULATOR_KEY or {DEFAULT_KEY!r})"
    )
    parser.add_argument("--protocol", choices=("legacy", "universal"), default="legacy")
    parser.add_argument("--queue-seconds", type=float, default=1.0, help="time a job stays queued")
    parser.add_argument("--processing-seconds", type=float, default=2.0, help="time a job stays processing")
    parser.add_argument(
        "--processing-seconds-max",
        type=float,
        default=None,
        metavar="S",
        help="draw each job's processing time uniformly from [--processing-seconds, S] at its submit (kept "
        "with the job, also in --state-file); default: every job takes --processing-seconds",
    )
    parser.add_argument("--state-file", type=Path, default=None, help="keep jobs in this JSON file across restarts")
    parser.add_argument(
        "--render",
        choices=("auto", "sample", "always"),
        default="sample",
        help="what a finished job's MP4 is: 'sample' serves the bundled 2 s 320x180 clip for every job "
        "(default: instant, and what the tests expect; rendering a 6 s 1080p clip takes seconds of CPU); "
        "'always' renders a clip of the requested duration, fps and size, zooming into the job's image_url "
        "(needs the render extra: pip install 'airflow-provider-ltx2[render]'); 'auto' renders when that "
        "extra is installed and serves the sample otherwise",
    )
    parser.add_argument(
        "--max-concurrent-jobs",
        type=_limit,
        default=None,
        metavar="N",
        help="refuse a submit while N jobs are queued or processing: 429 concurrency_limit_error with "
        "Retry-After until the earliest ends; no job is created (default: unlimited; Lightricks allows 2)",
    )
    parser.add_argument(
        "--rate-limit-per-minute",
        type=_limit,
        default=None,
        metavar="M",
        help="refuse a submit or poll beyond M in any 60 s: 429 rate_limit_error with Retry-After until the "
        "window frees a place; refused calls do not count, downloads and /_sim/ calls are free "
        "(default: unlimited)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, default=None, metavar="PATH", help="serve https with this PEM certificate (chain)"
    )
    parser.add_argument("--tls-key", type=Path, default=None, metavar="PATH", help="the PEM private key of --tls-cert")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    # Imported here so `--help` and package import stay fast.
    from airflow_provider_ltx2.simulator.server import SimConfig, render_mode, serve, tls_context

    if args.queue_seconds < 0 or args.processing_seconds < 0:
        raise SystemExit("ltx2-simulator: --queue-seconds and --processing-seconds must be >= 0")
    if args.processing_seconds_max is not None and args.processing_seconds_max < args.processing_seconds:
        raise SystemExit("ltx2-simulator: --processing-seconds-max must be >= --processing-seconds")
    try:
        render = render_mode(args.render)
    except ValueError as error:
        raise SystemExit(f"ltx2-simulator: --{error}") from None
    try:
        ssl_context = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except OSError as error:  # missing file, not PEM, key does not match the certificate
        raise SystemExit(f"ltx2-simulator: cannot use --tls-cert/--tls-key: {error}") from None
    key = args.key or os.environ.get("LTX2_SIMULATOR_KEY") or DEFAULT_KEY
    config = SimConfig(
        protocol=args.protocol,
        queue_seconds=args.queue_seconds,
        processing_seconds=args.processing_seconds,
        processing_seconds_max=args.processing_seconds_max,
        render=render,
        max_concurrent_jobs=args.max_concurrent_jobs,
        rate_limit_per_minute=args.rate_limit_per_minute,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.host, args.port, config, key, args.state_file, ssl_context))
    except OSError as error:  # e.g. the port is taken
        raise SystemExit(
            f"ltx2-simulator: cannot listen on {args.host}:{args.port}: {error.strerror or error}"
        ) from None


if __name__ == "__main__":
    main()
