"""The documentation holds together: no heading twice in a file, no relative link or anchor to nowhere.

Checks README.md and every docs/*.md the way GitHub renders them: headings and links inside fenced code
blocks and code spans do not count, and an anchor is the heading's text lower-cased, with punctuation
dropped, spaces turned into hyphens and ``-1``, ``-2``... appended to repeats. Also keeps the README a
short user's page, with the reference in docs/reference.md. Pure Python, no network.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(].*?[\"')])?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)
HTML_TAG = re.compile(r"<[^>]+>")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a fenced line is blanked, so numbering and paragraphs hold)."""
    lines, fence = [], ""
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
            lines.append("")
        elif match:
            fence = match.group(1)
            lines.append("")
        else:
            lines.append(line)
    return lines


def headings(text: str) -> list[str]:
    """The raw text of every ATX (``## x``) and setext (``x`` over ``---``) heading, in order."""
    found, previous = [], ""
    for line in prose_lines(text):
        atx = ATX_HEADING.match(line)
        if atx:
            found.append((atx.group(2) or "").strip())
            previous = ""
            continue
        if SETEXT_UNDERLINE.match(line) and previous.strip() and not previous.lstrip().startswith(("-", "*", "|", ">")):
            found.append(previous.strip())
            previous = ""
            continue
        previous = line
    return found


def rendered(heading: str) -> str:
    """The heading as displayed: code spans keep their text; link syntax, HTML and emphasis marks go."""
    parts = []
    for index, piece in enumerate(CODE_SPAN.split(heading)):
        # split() with two groups yields: text, fence, code, text, fence, code, ...
        if index % 3 == 2:
            parts.append(piece)
        elif index % 3 == 0:
            plain = HTML_TAG.sub("", INLINE_LINK.sub(lambda match: match.group(1), piece))
            parts.append(re.sub(r"[*~]|(?<!\w)_+|_+(?!\w)", "", plain))
    return "".join(parts).strip()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", rendered(heading).lower()).replace(" ", "-")


def anchors(text: str) -> list[str]:
    """Every heading's anchor; a repeated one gets ``-1``, ``-2``... as on GitHub."""
    seen: set[str] = set()
    result = []
    for heading in headings(text):
        base = candidate = slug(heading)
        count = 0
        while candidate in seen:
            count += 1
            candidate = f"{base}-{count}"
        seen.add(candidate)
        result.append(candidate)
    return result


def link_targets(text: str) -> list[str]:
    """Every link and image target outside code: inline, reference definitions, HTML ``href``/``src``."""
    targets = []
    for line in prose_lines(text):
        prose = CODE_SPAN.sub("", line)
        targets += [match.group(2) for match in INLINE_LINK.finditer(prose)]
        targets += [match.group(1) for match in HTML_LINK.finditer(prose)]
        definition = REFERENCE_DEFINITION.match(prose)
        if definition:
            targets.append(definition.group(1))
    return targets


def problems(path: Path, root: Path, text: str | None = None) -> list[str]:
    """What is wrong with one Markdown file: repeated headings, links to missing files or anchors.

    ``root`` is the repository: a link that leaves it points at a file users do not have.
    """
    text = path.read_text() if text is None else text
    found = []
    first_seen: dict[str, str] = {}
    for heading in headings(text):
        key = slug(heading)
        if key in first_seen:
            found.append(f"{path.name}: heading {heading!r} repeats {first_seen[key]!r}")
        else:
            first_seen[key] = heading
    for target in link_targets(text):
        if not target or SCHEME.match(target):
            continue
        location, _, anchor = target.partition("#")
        linked_text: str | None = text
        if location:
            linked = (path.parent / unquote(location)).resolve()
            if not linked.is_relative_to(root.resolve()):
                found.append(f"{path.name}: link {target!r} leaves the repository")
                continue
            if not linked.exists():
                found.append(f"{path.name}: link {target!r}: no such file")
                continue
            linked_text = linked.read_text() if linked.suffix == ".md" and linked.is_file() else None
        if anchor and linked_text is not None and unquote(anchor) not in anchors(linked_text):
            found.append(f"{path.name}: link {target!r}: no heading has that anchor")
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(REPO)) for doc in DOCS])
def test_the_documentation_has_no_repeated_heading_and_no_broken_link(doc: Path) -> None:
    assert problems(doc, REPO) == []


def test_the_user_page_links_every_docs_page() -> None:
    linked = {target.partition("#")[0] for target in link_targets((REPO / "README.md").read_text())}
    assert {f"docs/{doc.name}" for doc in DOCS[1:]} <= linked


def test_the_user_page_is_at_most_300_lines() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


def test_every_test_module_is_described() -> None:
    """Each test module anywhere under ``tests/`` (unit, integration, e2e, browser) is named, or matched by a
    pattern such as ``tests/unit/api/test_*.py``, in the test tables of docs/development.md and
    docs/reliability.md."""
    tables = (REPO / "docs" / "development.md").read_text() + (REPO / "docs" / "reliability.md").read_text()
    patterns = re.findall(r"`(tests/[\w/*.-]+\.py)`", tables)
    modules = sorted((REPO / "tests").rglob("test_*.py"))
    assert modules, "no test module found under tests/"
    undescribed = [
        str(module.relative_to(REPO))
        for module in modules
        if not any(fnmatch.fnmatchcase(str(module.relative_to(REPO)), pattern) for pattern in patterns)
    ]
    assert undescribed == []


@pytest.mark.parametrize(
    "section",
    [
        "errors-and-troubleshooting",
        "metrics",
        "retry-policy",
        "result-dict",
        "the-sidecar",
        "batch-operator-ltx2generatevideobatchoperator",
    ],
)
def test_the_reference_has_its_sections(section: str) -> None:
    reference = REPO / "docs" / "reference.md"
    assert reference.is_file()
    assert section in anchors(reference.read_text())


PUBLIC_PATHS = {
    "airflow_provider_ltx2.hooks.ltx2",
    "airflow_provider_ltx2.operators.ltx2",
    "airflow_provider_ltx2.operators.base",
    "airflow_provider_ltx2.operators.video",
    "airflow_provider_ltx2.operators.batch",
    "airflow_provider_ltx2.sensors.ltx2",
    "airflow_provider_ltx2.triggers.ltx2",
    "airflow_provider_ltx2.exceptions",
}


@pytest.mark.parametrize("page", ["README.md", "docs/reference.md"])
def test_the_user_pages_name_only_public_module_paths(page: str) -> None:
    """Internal modules get renamed and split; users are pointed only at the paths that stay."""
    named = {
        path.replace("/", ".") for path in re.findall(r"airflow_provider_ltx2(?:[./]\w+)+", (REPO / page).read_text())
    }
    internal = {path for path in named if not any(f"{path}.".startswith(f"{public}.") for public in PUBLIC_PATHS)}
    assert internal == set()


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Operator `Ltx2GenerateVideoOperator`", "operator-ltx2generatevideooperator"),
        ("TaskFlow decorator `@task.ltx2_video`", "taskflow-decorator-taskltx2_video"),
        ("Errors & troubleshooting", "errors--troubleshooting"),
        ("What it does, **briefly**", "what-it-does-briefly"),
        ("See [the contract](gateway-contract.md)", "see-the-contract"),
        ("`task_state_store` and _retries_", "task_state_store-and-retries"),
        ("Ünïcode stays", "ünïcode-stays"),
    ],
)
def test_anchors_are_made_as_github_makes_them(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_repeated_headings_get_numbered_anchors() -> None:
    assert anchors("# Setup\n\n## Setup\n\nSetup\n-----\n\n### Other\n") == ["setup", "setup-1", "setup-2", "other"]


@pytest.mark.parametrize(
    ("markdown", "complaint"),
    [
        ("# Install\n\ntext\n\n## Install\n", "heading 'Install' repeats 'Install'"),
        ("# Install\n\n### install\n", "heading 'install' repeats 'Install'"),
        ("Install\n=======\n\n## Install\n", "heading 'Install' repeats 'Install'"),
        ("# Install\n\nSee [usage](#usage).\n", "link '#usage': no heading has that anchor"),
        ("# Install\n\nSee [the page](missing.md).\n", "link 'missing.md': no such file"),
        ("![shot](img/none.png)\n", "link 'img/none.png': no such file"),
        ('<img src="none.png">\n', "link 'none.png': no such file"),
        ("[contract]: ../../API.md\n\nSee [contract].\n", "link '../../API.md' leaves the repository"),
        ("See [other](other.md#nowhere).\n", "link 'other.md#nowhere': no heading has that anchor"),
    ],
)
def test_the_checker_finds_what_is_broken(tmp_path: Path, markdown: str, complaint: str) -> None:
    root = tmp_path / "repo"
    (root / "img").mkdir(parents=True)
    (root / "other.md").write_text("# Somewhere\n")
    assert problems(root / "page.md", root, markdown) == [f"page.md: {complaint}"]


@pytest.mark.parametrize(
    "markdown",
    [
        "# Install\n\n## Usage\n\nSee [usage](#usage), [the other page](other.md#somewhere), [a dir](img).\n",
        "# Install\n\n```bash\n# Install\n[x](nowhere.md)\n```\n",
        "# Install\n\nThe syntax is `[x](nowhere.md)` and `## Install`.\n",
        "# Install\n\n[site](https://example.com/#install), [mail](mailto:a@example.com), [top](#install)\n",
        "# Install\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- item\n---\n",
    ],
)
def test_the_checker_passes_what_is_sound(tmp_path: Path, markdown: str) -> None:
    root = tmp_path / "repo"
    (root / "img").mkdir(parents=True)
    (root / "other.md").write_text("# Somewhere\n")
    assert problems(root / "page.md", root, markdown) == []
