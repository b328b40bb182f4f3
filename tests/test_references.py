"""The repository stands alone: every reference in it lands on a file (and section) in it.

(a) No tracked file cites a document that is not in the repository (design documents,
    guides, issues, notes kept elsewhere).
(b) Every `docs/<file>.md` (with its `§n`, `#anchor` or quoted section name), every relative
    markdown link and every `§n` names a file, heading or numbered item that exists; `§n` and
    `§n.m` are section n of docs/methodology.md and item m of its numbered list.
Pure file reading over `git ls-files`.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(REPO_ROOT).as_posix()

# Documents and notes that live outside the repository: citing them leaves a reader stranded.
EXTERNAL = [
    re.compile(r"\b(?:ARCHITECTURE|TOPICS|METHODOLOGY|CONVENTIONS)\.md\b"),
    re.compile(r"\bMETHODOLOGY\s§|\bTOPICS examples?\b"),
    re.compile(r"(?i)\b(?:the|production|deployment) guide\b|\bguide(?:'s|:)"),
    re.compile(r"(?i)\bplatform[ -]notes\b"),
    re.compile(r"(?i)\bdesign (?:card|folder|documents?|notes)\b|shared/design\b"),
    re.compile(r"(?i)seed-production"),
    re.compile(r"(?i)\bthe issue's\b|\(issue\b|\bissue #?\d+\b"),
]

# Files being rewritten elsewhere right now; they still cite external documents.
# TODO lead: replace their references (docs/topics.md, docs/methodology.md §9, ...) and empty this set.
EXTERNAL_PENDING = {
}

DOC_REF = re.compile(
    r"(?<![\w./-])(docs/[\w./-]+?\.md)"
    r"(?:#(?P<anchor>[\w-]+)"
    r"|(?P<sep>,? ?)(?:\"(?P<title>[^\"\n]{1,80})\"|(?P<section>§[\d.–-]+\d)))?"
)
MD_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
SECTION = re.compile(r"§(\d+)(?:\.(\d+))?(?:[–-](\d+)(?:\.(\d+))?)?")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".json", ".cfg", ".ini", ".txt", ".sh", ".sql",
                 ".env", ".conf", ".j2", ".html", ".js", ".css"}
TEXT_NAMES = {"Makefile", "Dockerfile", ".gitignore", ".dockerignore"}


@cache
def tracked() -> tuple[str, ...]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True, capture_output=True).stdout
    return tuple(name for name in out.decode().split("\0") if name)


@cache
def text_of(name: str) -> str | None:
    path = REPO_ROOT / name
    if path.suffix not in TEXT_SUFFIXES and path.name not in TEXT_NAMES:
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # deleted in the working tree, not yet committed
        return None
    return None if b"\0" in data else data.decode("utf-8", errors="replace")


def texts() -> list[tuple[str, str]]:
    return [(name, text) for name in tracked() if (text := text_of(name)) is not None and name != THIS]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


@cache
def headings(doc: str) -> tuple[str, ...]:
    text = (REPO_ROOT / doc).read_text()
    text = re.sub(r"(?ms)^```.*?^```", "", text)  # comments in code blocks are not headings
    return tuple(m.group(1).strip() for m in re.finditer(r"(?m)^#{1,6} +(.+?) *#*$", text))


def named_in(doc: str, title: str) -> bool:
    """A quoted name after a doc is the start of one of its headings, or a term it defines."""
    return (any(h.lower().startswith(title.lower()) for h in headings(doc))
            or f"`{title}`" in (REPO_ROOT / doc).read_text())


@cache
def methodology_sections() -> dict[int, set[int]]:
    """Section number -> the numbers of its top-level list items, from docs/methodology.md."""
    sections: dict[int, set[int]] = {}
    current: set[int] | None = None
    for line in (REPO_ROOT / "docs" / "methodology.md").read_text().splitlines():
        if heading := re.match(r"## §(\d+) ", line):
            current = sections.setdefault(int(heading.group(1)), set())
        elif line.startswith("## "):
            current = None
        elif current is not None and (item := re.match(r"(\d+)\. ", line)):
            current.add(int(item.group(1)))
    return sections


def missing_sections(text: str) -> list[str]:
    sections, bad = methodology_sections(), []
    for match in SECTION.finditer(text):
        n, m, end_a, end_b = (int(g) if g else None for g in match.groups())
        cited = [(n, m)]
        if end_a is not None:
            cited.append((end_a, end_b) if end_b is not None else (n, end_a) if m is not None else (end_a, None))
        for section, item in cited:
            if section not in sections or (item is not None and item not in sections[section]):
                bad.append(match.group(0))
    return bad


@cache
def tracked_paths() -> frozenset[str]:
    return frozenset(p for name in tracked() for p in parents(name))


def parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def broken_references(name: str, text: str) -> list[str]:
    bad: list[str] = []
    for match in DOC_REF.finditer(text):
        doc = match.group(1)
        if doc not in tracked_paths():
            bad.append(f"{doc}: no such file")
            continue
        if (anchor := match.group("anchor")) and anchor not in {slug(h) for h in headings(doc)}:
            bad.append(f"{doc}#{anchor}: no such heading")
        title = match.group("title")
        if title and match.group("sep") and not named_in(doc, title):
            bad.append(f'{doc}, "{title}": no such heading')
        if match.group("section") and doc != "docs/methodology.md":
            bad.append(f"{doc} {match.group('section')}: § numbers belong to docs/methodology.md")
    if name.endswith(".md"):
        for target in MD_LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # URLs, mail, anchors within the page
            path, _, anchor = target.partition("#")
            resolved = (REPO_ROOT / name).parent.joinpath(path).resolve()
            try:
                relative = resolved.relative_to(REPO_ROOT).as_posix()
            except ValueError:
                bad.append(f"({target}): outside the repository")
                continue
            if relative not in tracked_paths():
                bad.append(f"({target}): no such file")
            elif anchor and relative.endswith(".md") and anchor not in {slug(h) for h in headings(relative)}:
                bad.append(f"({target}): no such heading")
    bad += [f"{s}: not in docs/methodology.md" for s in missing_sections(text)]
    return bad


def test_the_methodology_has_numbered_sections():
    sections = methodology_sections()
    assert sorted(sections) == list(range(len(sections))) and len(sections) >= 11, sorted(sections)
    assert {1, 2, 3, 4, 5, 6} <= sections[2] and {1, 2, 3, 4, 5} <= sections[7]


def test_no_file_cites_a_document_outside_the_repository():
    found = []
    for name, text in texts():
        if name in EXTERNAL_PENDING:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            found += [f"{name}:{number}: {line.strip()}" for pattern in EXTERNAL if pattern.search(line)][:1]
    assert not found, "references to documents outside the repository:\n" + "\n".join(found)


def test_every_reference_lands_in_the_repository():
    found = [f"{name}: {problem}" for name, text in texts() for problem in broken_references(name, text)]
    assert not found, "references to nothing:\n" + "\n".join(found)


@pytest.mark.parametrize(("text", "problems"), [
    ("docs/methodology.md §5 and §2.4–2.6", []),
    ("docs/methodology.md §99", ["§99: not in docs/methodology.md"]),
    ("see §7.40", ["§7.40: not in docs/methodology.md"]),
    ("docs/nowhere.md", ["docs/nowhere.md: no such file"]),
    ('docs/topics.md, "Reading the topics"', []),
    ('docs/topics.md, "Reading the tea leaves"', ['docs/topics.md, "Reading the tea leaves": no such heading']),
    ("docs/operations.md#syiindexstale", []),
    ("docs/operations.md#nothing-here", ["docs/operations.md#nothing-here: no such heading"]),
])
def test_the_checker_finds_what_it_should(text, problems):
    assert broken_references("x.py", text) == problems


# names split in two, so that a grep for them finds real citations only
@pytest.mark.parametrize("text", [
    "see ARCHITECTURE" ".md", "(METHODOLOGY" " §3)", "what the guide asks for", "Guide: p95",
    "(platform notes)", "the issue's books", "Issue 9: no update",
])
def test_the_checker_knows_external_references(text):
    assert any(p.search(text) for p in EXTERNAL)
