"""Table 2: what importing the provider's operator or sensor adds to a DAG file's parse, after ``airflow.sdk``.

Each sample is a fresh interpreter that imports ``airflow.sdk``, then the module under test, and reports the
second import's CPU and wall time, the RSS it added and the modules it loaded. One more run per module with
``-X importtime`` names the heaviest direct imports.

An installed wheel has its bytecode compiled by pip, but an editable install under
``PYTHONDONTWRITEBYTECODE=1`` (as in some dev environments) compiles the provider from source at every
import. So the samples keep bytecode in a private cache (``PYTHONPYCACHEPREFIX``, outside the repository),
warmed before measuring; one extra row then removes the provider's entries and measures the uncompiled case.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from bench.common import MIB, Table, median, verdict

OPERATOR = "airflow_provider_ltx2.operators.video"
SENSOR = "airflow_provider_ltx2.sensors.ltx2"
BOTH = f"{OPERATOR}, {SENSOR}"  # as a DAG file that submits and waits elsewhere imports them
BATCH = "airflow_provider_ltx2.operators.batch"
BEFORE_0_4 = "airflow_provider_ltx2.operators.ltx2"  # the path DAG files of 0.3 and earlier import: both operators
HTTP = "airflow.providers.http.operators.http"
COMPILED = {
    "LTX-2 operator": OPERATOR,
    "LTX-2 sensor": SENSOR,
    "LTX-2 operator and sensor together": BOTH,
    "LTX-2 batch operator": BATCH,
    "LTX-2 operators by their 0.3 path": BEFORE_0_4,
    "providers-http HttpOperator": HTTP,
}
TARGETS_MS = {OPERATOR: 20.0, SENSOR: 20.0, BOTH: 15.0}
UNCOMPILED = ("LTX-2 sensor, provider bytecode not cached", SENSOR)
# Needed only when a task runs (HTTP clients, object stores); a DAG file should not pay for them.
HEAVY = ("aiohttp", "requests", "urllib3", "fsspec", "upath", "yarl", "multidict", "tenacity", "requests_toolbelt")
PYCACHE = os.path.join(tempfile.gettempdir(), "ltx2-bench-pycache")
MARK = "--- bench: module under test starts here ---"

SAMPLE = """
import json, os, sys, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
t = time.process_time()
import airflow.sdk
sdk_cpu = time.process_time() - t
before, rss0 = set(sys.modules), rss()
print({mark!r}, file=sys.stderr, flush=True)
t, cpu = time.perf_counter(), time.process_time()
import {module}
seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
new = sorted(set(sys.modules) - before)
print(json.dumps({{"sdk_cpu": sdk_cpu, "s": seconds, "cpu": cpu, "rss": rss() - rss0, "new": new}}))
"""


def sample(module: str, write_bytecode: bool = True, importtime: bool = False) -> tuple[dict[str, Any], str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    flags = ["-X", "importtime"] if importtime else []
    code = SAMPLE.format(module=module, mark=MARK)
    done = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"importing {module} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def direct_imports(stderr: str, modules: str, top: int = 4) -> list[tuple[str, float]]:
    """The heaviest imports the last of ``modules`` itself triggered (cumulative ms), from ``-X importtime``."""
    module = modules.rsplit(", ", maxsplit=1)[-1]
    entries = []  # (depth, name, cumulative us), in the order Python finished them: children first
    for line in stderr.split(MARK, 1)[-1].splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            entries.append((len(match.group(2)) // 2, match.group(3), int(match.group(1))))
    index = next(i for i, (_, name, _) in enumerate(entries) if name == module)
    depth = entries[index][0]
    children = []
    for child_depth, name, cumulative in reversed(entries[:index]):
        if child_depth <= depth:
            break
        if child_depth == depth + 1:
            children.append((name, cumulative / 1000))
    return sorted(children, key=lambda item: -item[1])[:top]


def table_row(label: str, module: str, runs: list[dict[str, Any]], importtime_stderr: str) -> list[str]:
    new = runs[-1]["new"]
    heavy = sorted({name.split(".")[0] for name in new} & set(HEAVY))
    offenders = ", ".join(f"{name} {ms:.0f}" for name, ms in direct_imports(importtime_stderr, module))
    return [
        f"{label} (`{module}`)",
        f"{1000 * median([r['cpu'] for r in runs]):.1f}",
        f"{1000 * median([r['s'] for r in runs]):.1f}",
        f"{median([r['rss'] for r in runs]) / MIB:.1f}",
        str(len(new)),
        ", ".join(heavy) or "none",
        offenders,
    ]


def run(repeats: int = 7, uncompiled_repeats: int = 3) -> Table:
    table = Table(
        title=f"2. DAG-parse cost: import on top of `import airflow.sdk` (fresh interpreter each, median of {repeats})",
        columns=[
            "module",
            "added CPU ms",
            "added wall ms",
            "added RSS MiB",
            "modules added",
            "task-time packages pulled in",
            "heaviest direct imports (cumulative ms, -X importtime)",
        ],
    )
    # The -X importtime run comes first: it also fills the bytecode cache, so the timed samples read it.
    importtime = {module: sample(module, importtime=True)[1] for module in COMPILED.values()}
    samples: dict[str, list[dict[str, Any]]] = {module: [] for module in COMPILED.values()}
    for _ in range(repeats):  # interleaved, so a burst of load elsewhere hits every module alike
        for module in COMPILED.values():
            samples[module].append(sample(module)[0])
    for label, module in COMPILED.items():
        table.rows.append(table_row(label, module, samples[module], importtime[module]))

    label, module = UNCOMPILED
    spec = importlib.util.find_spec("airflow_provider_ltx2")
    assert spec is not None and spec.submodule_search_locations
    package_dir = os.path.abspath(spec.submodule_search_locations[0])
    shutil.rmtree(PYCACHE + package_dir, ignore_errors=True)
    uncompiled = [sample(module, write_bytecode=False)[0] for _ in range(uncompiled_repeats)]
    table.rows.append(table_row(label, module, uncompiled, sample(module, False, importtime=True)[1]))

    sdk_cpu = median([r["sdk_cpu"] for runs in samples.values() for r in runs])
    table.notes.append(
        f"The last row is the median of {uncompiled_repeats}. For scale: `import airflow.sdk` itself takes "
        f"{1000 * sdk_cpu:.0f} ms CPU (median). CPU time is the figure to trust on a shared machine; wall time "
        "includes waiting for a core. The -X importtime column is from one run (with its own overhead)."
    )
    for label, module in COMPILED.items():
        if module not in TARGETS_MS:
            continue
        ms, target = 1000 * median([r["cpu"] for r in samples[module]]), TARGETS_MS[module]
        table.notes.append(
            f"Target {label} adds <= {target:g} ms: {verdict(ms <= target)} ({ms:.1f} ms CPU"
            + ("" if ms <= target else f", {ms - target:.1f} ms over")
            + ")."
        )
    return table
