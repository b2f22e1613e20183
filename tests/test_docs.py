"""What a reader follows: every relative link in README.md and docs/*.md resolves to a file
in the repository, and the README links nowhere outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not a link
    return LINK.findall(text)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_resolves():
    dead = []
    for page in pages():
        for target in links(page):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # absolute (checked below for the README) or within the page
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists() or ROOT not in path.parents:
                dead.append(f"{page.relative_to(ROOT)}: {target}")
    assert not dead, dead


def test_the_readme_links_nowhere_outside_the_repository():
    outside = [t for t in links(ROOT / "README.md") if re.match(r"[a-z]+:", t)]
    assert not outside
    assert "../shared" not in (ROOT / "README.md").read_text()
