"""The distributions as a release builds them: the sdist from the repository's files, the wheel from the sdist.

The sdist is the package and what builds it (pyproject.toml, README.md, LICENSE): tests, the benchmark,
scripts, docs and the example DAGs live in the repository only. The wheel is the package, its data files and
its metadata, and runs from itself.
"""

from __future__ import annotations

import configparser
import email
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from airflow_provider_ltx2 import REPOSITORY_URL, __version__

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_ltx2"
DIST = f"{PACKAGE}-{__version__}"
# What setuptools may put at an sdist's top level besides the package: metadata, and what the wheel is built from.
SDIST_TOP_LEVEL = {
    PACKAGE,
    f"{PACKAGE}.egg-info",
    "PKG-INFO",
    "setup.cfg",
    "pyproject.toml",
    "MANIFEST.in",
    "README.md",
    "LICENSE",
}
# Files the package reads at run time besides its modules.
DATA_FILES = [
    "py.typed",
    "lineage_schemas/Ltx2GenerationRunFacet.json",
    "lineage_schemas/Ltx2BatchRunFacet.json",
    "simulator/sample.mp4",
    "simulator/sample.jpg",
]
# The build backend named by pyproject.toml, called as a build frontend calls it (setuptools>=77: the test extra).
BUILD = "import sys; from setuptools import build_meta; print(getattr(build_meta, 'build_' + sys.argv[1])(sys.argv[2]))"
# Run from the unpacked wheel alone (-I -S: no site-packages, so not the editable checkout either).
PROBE = """
import importlib, importlib.resources, json, sys
sys.path.insert(0, sys.argv[1])
import airflow_provider_ltx2
module, _, function = sys.argv[2].partition(":")
schemas = importlib.resources.files("airflow_provider_ltx2") / "lineage_schemas"
print(json.dumps({
    "file": airflow_provider_ltx2.__file__,
    "versions": getattr(importlib.import_module(module), function)()["versions"],
    "schemas": {s.name: list(json.loads(s.read_text(encoding="utf-8"))["$defs"]) for s in schemas.iterdir()},
}))
"""


@dataclass(frozen=True)
class Dists:
    sources: list[PurePosixPath]  # the repository's files the build saw
    sdist: Path
    wheel: Path


def repository_files() -> list[PurePosixPath]:
    """The repository's files as a clone holds them, with those not yet committed (nothing git ignores)."""
    command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(command, cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return [PurePosixPath(name) for name in listed.split("\0") if name and (ROOT / name).is_file()]


def build(kind: str, source: Path, out: Path) -> Path:
    done = subprocess.run([sys.executable, "-c", BUILD, kind, str(out)], cwd=source, capture_output=True, text=True)
    assert done.returncode == 0, f"build_{kind} failed (it needs setuptools>=77):\n{done.stderr[-4000:]}"
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    tmp = tmp_path_factory.mktemp("dists")
    checkout, unpacked = tmp / "checkout", tmp / "unpacked"
    sources = repository_files()
    for name in sources:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, checkout / name)
    sdist = build("sdist", checkout, tmp)
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (unpacked_sdist,) = unpacked.iterdir()
    return Dists(sources=sources, sdist=sdist, wheel=build("wheel", unpacked_sdist, tmp))


def sdist_files(sdist: Path) -> dict[str, bytes]:
    with tarfile.open(sdist) as archive:
        return {
            PurePosixPath(*PurePosixPath(member.name).parts[1:]).as_posix(): reader.read()
            for member in archive.getmembers()
            if (reader := archive.extractfile(member)) is not None
        }


def dist_info(names: list[str] | set[str]) -> str:
    """The wheel's metadata folder, ``<name>-<version>.dist-info``."""
    (folder,) = {PurePosixPath(name).parts[0] for name in names if name.split("/")[0].endswith(".dist-info")}
    return folder


def test_the_sdist_carries_the_license_and_no_tests(dists: Dists) -> None:
    files = sdist_files(dists.sdist)

    assert files["LICENSE"] == (ROOT / "LICENSE").read_bytes()
    assert [name for name in files if "tests" in PurePosixPath(name).parts or name.endswith("conftest.py")] == []
    top_level = {PurePosixPath(name).parts[0] for name in files}
    assert top_level - SDIST_TOP_LEVEL == set(), "repository-only files in the sdist"
    assert {PACKAGE, "LICENSE", "README.md", "pyproject.toml"} <= top_level


def test_the_wheel_is_the_package_and_its_metadata_with_the_license(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = wheel.namelist()
        metadata = email.message_from_bytes(wheel.read(f"{dist_info(names)}/METADATA"))
        license_file = f"{dist_info(names)}/licenses/LICENSE"
        license_text = wheel.read(license_file) if license_file in names else None

    # the version and the repository the OpenLineage facets name are the ones the metadata gives
    assert metadata["Version"] == __version__
    assert {PurePosixPath(name).parts[0] for name in names} == {PACKAGE, f"{DIST}.dist-info"}
    assert license_text == (ROOT / "LICENSE").read_bytes()
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL", []))
    assert urls["Homepage"] == urls["Source"] == REPOSITORY_URL
    assert urls["Changelog"] == f"{REPOSITORY_URL}/blob/main/CHANGELOG.md" and (ROOT / "CHANGELOG.md").is_file()


def test_the_wheel_carries_every_file_of_the_package_and_runs_from_itself(dists: Dists, tmp_path: Path) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.read_string(wheel.read(f"{dist_info(names)}/entry_points.txt").decode())
        wheel.extractall(tmp_path / "site")

    package_files = {name.as_posix() for name in dists.sources if name.parts[0] == PACKAGE}
    assert sorted(package_files - names) == []
    assert sorted({f"{PACKAGE}/{name}" for name in DATA_FILES} - names) == []
    provider_info = entry_points["apache_airflow_provider"]["provider_info"]
    assert provider_info == f"{PACKAGE}.get_provider_info:get_provider_info"
    for group in entry_points.sections():
        for target in entry_points[group].values():
            module = target.partition(":")[0].replace(".", "/")
            assert {f"{module}.py", f"{module}/__init__.py"} & names, f"[{group}] {target}: no module in the wheel"

    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(tmp_path / "site"), provider_info],
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert Path(found["file"]).is_relative_to(tmp_path / "site")
    assert found["versions"] == [__version__]
    shipped = {name.name for name in dists.sources if name.parent == PurePosixPath(PACKAGE, "lineage_schemas")}
    assert shipped and found["schemas"] == {name: [name.removesuffix(".json")] for name in shipped}
