"""The README, docs/ and the model card: links resolve, named files exist, the README starts right."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "src/nanosora/assets/shapes-model/MODEL_CARD.md",
]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A path-like word ending in a source or config suffix, e.g. configs/shapes_dit.yaml.
FILE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)+[\w.-]+\.(?:py|yaml|sh|png))")


def without_code_blocks(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def anchors(page: Path) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens, -N repeats."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    for line in without_code_blocks(page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
        slug = slug.replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(without_code_blocks(page.read_text())):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_files_exist(page: Path) -> None:
    shipped = ROOT / "src/nanosora/assets/shapes-model"  # a pipeline directory
    bases = [ROOT, ROOT / "src/nanosora", ROOT / "src", ROOT / "tests", shipped]
    missing = [
        name
        for name in sorted(set(FILE.findall(page.read_text())))
        if not name.startswith(("runs/", "qs/", "DIR/", "RUN/"))
        and not any((base / name).exists() for base in bases)
    ]
    assert not missing, f"{page.name} names files that do not exist: {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    lines = [x for x in (ROOT / "README.md").read_text().splitlines() if x.strip()]
    assert lines[0].startswith("# ") and lines[1] == "```bash"
    assert lines[2].startswith("make demo") and lines[3].startswith("make test")
    assert lines[4] == "```"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()
