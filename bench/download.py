"""Table 3: streaming a large result to ``output_uri`` (the hook's stream written in place) against ``curl -o``.

``delivery.save_video`` adds the SHA-256 the sidecar records (hashed on the way, not read again): CPU that any
client writing a checksum pays, left out here so the figures compare the transfer alone, as before.

The simulator pads the sample MP4 with a ``free`` box to the wanted size. Each hook download runs in a fresh
worker (``python -m bench.download worker CLIENT URL SMALL_URL PATH SIMULATOR_PID``) that records its RSS
after importing the hook, downloads a small video once (so lazy imports and first-use allocations are done),
then the large one: "RSS added" is peak RSS minus the RSS after the warm-up, "cold" minus the RSS before it.
A plain ``requests`` loop runs the same way, as the floor for a Python client.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.common import (
    KEY,
    KEY_HEADER,
    MIB,
    RESULT_PATH,
    Table,
    current_rss,
    median,
    peak_rss,
    process_cpu,
    result_channel,
    run_worker,
    submit_one,
    verdict,
)

SIZE = 1 << 30
RSS_TARGET_MIB = 64
THROUGHPUT_TARGET = 0.70


def requests_download(url: str, path: str) -> int:
    """The reference: the simplest streaming download a Python user writes with ``requests``."""
    import requests

    size = 0
    with requests.get(url, stream=True, timeout=(10, 60)) as response, open(path, "wb") as out:
        for chunk in response.iter_content(MIB):
            out.write(chunk)
            size += len(chunk)
    return size


def worker(client: str, url: str, small_url: str, path: str, sim_pid: str) -> None:
    out = result_channel()
    from airflow_provider_ltx2.hooks.ltx2 import Ltx2Hook
    from airflow_provider_ltx2.storage import write_file

    rss_cold = current_rss()
    hook = Ltx2Hook()

    def download(source: str, target: str) -> int:
        if client == "hook":  # the provider's download path: the hook's stream, written in place
            write_file(f"file://{target}", None, hook.stream(source))
            return os.path.getsize(target)
        return requests_download(source, target)

    download(small_url, f"{path}.small")
    os.unlink(f"{path}.small")
    rss_warm = current_rss()
    start, cpu, sim_cpu = time.perf_counter(), os.times(), process_cpu(int(sim_pid))
    size = download(url, path)
    seconds, end = time.perf_counter() - start, os.times()
    result = {
        "bytes": size,
        "seconds": seconds,
        "user": end.user - cpu.user,
        "sys": end.system - cpu.system,
        "sim": (process_cpu(int(sim_pid)) - sim_cpu) / seconds,
        "cold": rss_cold,
        "warm": rss_warm,
        "peak": peak_rss(),
    }
    print(json.dumps(result), file=out, flush=True)


def video_url(sim: Any, padding: int) -> str:
    """Submit a job that is done at once and return its video URL."""
    from urllib.request import Request, urlopen

    sim.configure(queue_seconds=0, processing_seconds=0, video_padding_bytes=padding)
    request_id = submit_one(sim.base_url)
    body = json.dumps({"request_id": request_id}).encode()
    headers = {KEY_HEADER: KEY, "Content-Type": "application/json"}
    with urlopen(Request(sim.base_url + RESULT_PATH, data=body, headers=headers), timeout=10) as reply:
        return str(json.loads(reply.read())["video"]["url"])


def run_curl(url: str, path: str, sim_pid: int) -> dict[str, float]:
    before, start, sim_cpu = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter(), process_cpu(sim_pid)
    subprocess.run(["curl", "-sS", "--fail", "-o", path, url], check=True, timeout=300)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "bytes": os.path.getsize(path),
        "seconds": seconds,
        "user": after.ru_utime - before.ru_utime,
        "sys": after.ru_stime - before.ru_stime,
        "sim": (process_cpu(sim_pid) - sim_cpu) / seconds,
    }


def cpu_text(runs: list[dict[str, Any]]) -> str:
    return f"{median([r['user'] for r in runs]):.2f} + {median([r['sys'] for r in runs]):.2f}"


def run(sim: Any, repeats: int = 5) -> Table:
    sim.reset()
    small, large = video_url(sim, 0), video_url(sim, SIZE)
    runs: dict[str, list[dict[str, Any]]] = {"curl": [], "hook": [], "requests": []}
    with tempfile.TemporaryDirectory(prefix="ltx2-bench-download-") as folder:
        path = os.path.join(folder, "video.mp4")
        for repeat in range(repeats):  # interleaved, in a rotating order, so all see the same conditions
            shift = repeat % len(runs)
            order = list(runs)[shift:] + list(runs)[:shift]
            for client in order:
                results = runs[client]
                if client == "curl":
                    results.append(run_curl(large, path, sim.process.pid))
                else:
                    args = [client, large, small, path, str(sim.process.pid)]
                    results.append(run_worker("bench.download", args, timeout=600))
                assert os.path.getsize(path) == results[-1]["bytes"] > SIZE, f"{client} download incomplete"
                os.unlink(path)
    speeds = {client: median([r["bytes"] / r["seconds"] for r in results]) for client, results in runs.items()}
    hook = runs["hook"]
    added = median([r["peak"] - r["warm"] for r in hook]) / MIB
    cold = median([r["peak"] - r["cold"] for r in hook]) / MIB
    labels = {
        "hook": "`write_file('file://...', None, Ltx2Hook().stream(url))`",
        "requests": "reference: `requests` `iter_content(1 MiB)` to `open(path, 'wb')`",
        "curl": "`curl -sS -o`",
    }
    table = Table(
        title=f"3. Download: {SIZE / (1 << 30):g} GiB result from the simulator to a local file (median of {repeats})",
        columns=[
            "client",
            "throughput MiB/s",
            "vs curl",
            "client CPU s (user + sys)",
            "simulator CPU",
            "peak RSS added MiB (after warm-up / cold)",
        ],
    )
    for client, label in labels.items():
        results = runs[client]
        memory = (
            "-"
            if client == "curl"
            else (
                f"{median([r['peak'] - r['warm'] for r in results]) / MIB:.1f} / "
                f"{median([r['peak'] - r['cold'] for r in results]) / MIB:.1f}"
            )
        )
        table.rows.append(
            [
                label,
                f"{speeds[client] / MIB:.0f}",
                f"{speeds[client] / speeds['curl']:.0%}",
                cpu_text(results),
                f"{median([r['sim'] for r in results]):.0%}",
                memory,
            ]
        )
    ratio = speeds["hook"] / speeds["curl"]
    table.notes += [
        f"Target peak RSS added < {RSS_TARGET_MIB} MiB: {verdict(added < RSS_TARGET_MIB)} ({added:.1f} MiB after "
        f"warm-up; {cold:.1f} MiB including the download path's lazy imports).",
        f"Target throughput >= {THROUGHPUT_TARGET:.0%} of curl: {verdict(ratio >= THROUGHPUT_TARGET)} ({ratio:.0%}).",
        f"curl: {shutil.which('curl')}; files go to {tempfile.gettempdir()} (page cache; disk write-back is the same "
        "for all). Python clients run in fresh processes after a small warm-up download. Simulator CPU = its CPU "
        "time / the transfer's wall time: near 100% (one core) means the simulator, not the client, set the pace.",
    ]
    return table


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(*sys.argv[2:7])
