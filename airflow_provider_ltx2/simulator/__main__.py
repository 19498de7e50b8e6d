"""Command line entry point: ``python -m airflow_provider_ltx2.simulator`` / ``ltx2-simulator``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltx2-simulator", description="Local stand-in for the Pixazo LTX-2 image-to-video gateway."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port to bind; 0 picks a free one (default: 8089)")
    parser.add_argument(
        "--key", default=None, help="accepted subscription key (default: $LTX2_SIMULATOR_KEY or 'sim-key')"
    )
    parser.add_argument("--protocol", choices=("legacy", "universal"), default="legacy")
    parser.add_argument("--queue-seconds", type=float, default=1.0, help="time a job stays queued")
    parser.add_argument("--processing-seconds", type=float, default=2.0, help="time a job stays processing")
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
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Imported here so `--help` and package import stay fast.
    from airflow_provider_ltx2.simulator.server import DEFAULT_KEY, SimConfig, render_mode, serve

    if args.queue_seconds < 0 or args.processing_seconds < 0:
        raise SystemExit("ltx2-simulator: --queue-seconds and --processing-seconds must be >= 0")
    try:
        render = render_mode(args.render)
    except ValueError as error:
        raise SystemExit(f"ltx2-simulator: --{error}") from None
    key = args.key or os.environ.get("LTX2_SIMULATOR_KEY") or DEFAULT_KEY
    config = SimConfig(
        protocol=args.protocol,
        queue_seconds=args.queue_seconds,
        processing_seconds=args.processing_seconds,
        render=render,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.host, args.port, config, key, args.state_file))
    except OSError as error:  # e.g. the port is taken
        raise SystemExit(
            f"ltx2-simulator: cannot listen on {args.host}:{args.port}: {error.strerror or error}"
        ) from None


if __name__ == "__main__":
    main()
