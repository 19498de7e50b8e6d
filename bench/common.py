"""Shared pieces: the result table, machine facts, statistics, and talking to the simulator directly."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# The contract's plain constants (no provider code), for every table's clients
from airflow_provider_ltx2.contract import KEY_HEADER, RESULT_PATH, SUBMIT_PATH  # noqa: F401 - re-exported

KEY = "bench-key"
SUBMIT_BODY = {"image_url": "https://images.example.com/cat.jpg", "prompt": "waves roll in at sunset"}
# The headers every provider call carries (docs/gateway-contract.md), for the clients that use no provider code.
POLL_HEADERS = {KEY_HEADER: KEY, "Content-Type": "application/json", "Cache-Control": "no-cache"}
MIB = 1 << 20


@dataclass
class Table:
    """One result table: printed to the terminal and written to RESULTS.md as the same Markdown."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        widths = [max(len(str(row[i])) for row in [self.columns, *self.rows]) for i in range(len(self.columns))]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

        parts = [f"## {self.title}", "", line(self.columns), line(["-" * w for w in widths])]
        parts += [line(row) for row in self.rows]
        if self.notes:
            parts += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(parts) + "\n"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> list[tuple[str, str]]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return [
        ("Date", time.strftime("%Y-%m-%d")),
        ("CPU", cpu),
        ("Cores", str(os.cpu_count())),
        ("RAM", f"{ram:.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("Airflow", package_version("apache-airflow")),
        ("Task SDK", package_version("apache-airflow-task-sdk")),
        ("providers-http", package_version("apache-airflow-providers-http")),
        ("aiohttp / requests", f"{package_version('aiohttp')} / {package_version('requests')}"),
        ("Load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return percentile(values, 50)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def raise_fd_limit(need: int = 0) -> int:
    """Thousands of sockets need thousands of file descriptors: take the hard limit, raised to ``need`` when
    allowed (root); say so on stderr when the limit stays below ``need``. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            soft, hard = need, need
        except (ValueError, OSError):
            pass
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < need:
        print(
            f"warning: at most {soft} open files (ulimit -n); {need} wanted for the pollers' sockets",
            file=sys.stderr,
            flush=True,
        )
    return soft


def current_rss() -> int:
    """Resident set size of this process in bytes, from /proc (no import that would itself add memory)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """High-water mark of this process's resident set, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) another process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker(
    module: str, args: list[str], stdin: str = "", timeout: float = 300, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python -m module worker ...`` in a fresh process; its last stdout line is a JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", module, "worker", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{module} worker failed ({done.returncode}): {done.stderr[-3000:]}")
    return dict(json.loads(lines[-1]))


async def submit_jobs(base_url: str, count: int, concurrency: int = 50) -> list[tuple[str, float]]:
    """Submit ``count`` jobs straight to the simulator; return (request_id, epoch time the reply came)."""
    import aiohttp

    headers = {KEY_HEADER: KEY}
    limit = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession) -> tuple[str, float]:
        async with limit, session.post(base_url + SUBMIT_PATH, json=SUBMIT_BODY, headers=headers) as reply:
            body = await reply.json()
            return str(body["request_id"]), time.time()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        return list(await asyncio.gather(*(one(session) for _ in range(count))))


def submit_one(base_url: str) -> str:
    [(request_id, _)] = asyncio.run(submit_jobs(base_url, 1))
    return request_id


def result_channel() -> Any:
    """A private stdout for a worker's result lines; anything else printing to stdout goes to stderr."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return channel


def wrap_async_poll(around: Callable[[str, Awaitable[Any]], Awaitable[Any]]) -> None:
    """Route every ``Ltx2Hook.aget_status`` call through ``around(request_id, poll)`` (a second call replaces it).

    The job is found among the arguments, so this fits the hook whichever way it is called:
    ``(session, gateway, job, deadline)`` or, on a hook that holds its own session, ``(job, deadline=...)``.
    """
    from airflow_provider_ltx2.api.jobs import Job
    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook

    original = getattr(Ltx2Hook.aget_status, "bench_original", Ltx2Hook.aget_status)

    async def aget_status(self: Any, *args: Any, **kwargs: Any) -> Any:
        # The job is the first argument on the current hook: checked first, so the wrapper costs the trigger's
        # polls (and not the floor's) as little as it can.
        job = args[0] if args and type(args[0]) is Job else None
        if job is None:
            job = next(arg for arg in (*args, *kwargs.values()) if isinstance(arg, Job))
        return await around(job.request_id, original(self, *args, **kwargs))

    aget_status.bench_original = original  # type: ignore[attr-defined]
    Ltx2Hook.aget_status = aget_status  # type: ignore[method-assign]
