"""The README and docs/: every relative link and image resolves (the file exists, and a #fragment
names a heading of that file, as GitHub makes anchors), and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks (a link in a code sample is not a link)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in prose(page.read_text(encoding="utf-8")).splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


def links(page: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(prose(page.read_text(encoding="utf-8")))]


def test_the_pages_exist():
    names = {p.name for p in PAGES}
    assert {"README.md", "app.md", "training.md", "generating.md", "corpora.md", "evaluation.md", "gpus.md",
            "performance.md", "reliability.md", "development.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_image_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_readme_opens_with_a_picture_of_the_app_and_stays_short():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    first_image = next(t for t in links(ROOT / "README.md") if t.endswith((".svg", ".png")))
    assert first_image.startswith("docs/images/")
    assert text.index(first_image) < text.index("## ")  # before the first section
    svg = (ROOT / first_image).read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<svg") and "minigpt" in svg.lower()  # Textual's export of the app


# A speed ratio ("1.64x", "0.38x") holds for the machine class it was measured on: the section that
# quotes one (or a heading above it) names the class, as benchmarks/machine.py prints it.
RATIO = re.compile(r"(?<![\w.])\d+(?:\.\d+)?x(?![\w-])")
CLASSES = ("CPU with native bf16", "CPU without native bf16", "GPU ")


def sections(text: str) -> list[tuple[str, str]]:
    """(the headings over a section, its text) for each section of a page, headings included."""
    out, stack, body = [], [], []
    for line in prose(text).splitlines():
        if m := re.match(r"(#{1,6})\s+(.*)", line):
            out.append((" / ".join(h for _, h in stack), "\n".join(body)))
            level = len(m.group(1))
            stack = [(lvl, h) for lvl, h in stack if lvl < level] + [(level, m.group(2))]
            body = []
        else:
            body.append(line)
    out.append((" / ".join(h for _, h in stack), "\n".join(body)))
    return out


def unlabelled_ratios(text: str) -> list[str]:
    return [f"{head or '(top)'}: {RATIO.search(body).group(0)}" for head, body in sections(text)
            if RATIO.search(body) and not any(c in head + body for c in CLASSES)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_speed_ratio_names_its_machine_class(page):
    assert not unlabelled_ratios(page.read_text(encoding="utf-8")), \
        f"{page.name} quotes a ratio in a section that names no machine class ({', '.join(CLASSES)})"


def test_the_ratio_check_reads_sections_and_their_headings():
    page = ("# P\n\n## On a CPU with native bf16\n\n### Training\n\n1.64x the tokens/s\n\n"
            "## Elsewhere\n\nthe step is 0.94x\n\n2 x 128 wide, 2048x2048, 3x3 (three by three is no ratio)\n")
    assert unlabelled_ratios(page) == ["P / Elsewhere: 0.94x"]


def test_the_checker_catches_a_broken_link(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n[ok](#title) [bad](b.md) [frag](#nowhere)\n```\n[x](y.md)\n```\n")
    page = tmp_path / "a.md"
    assert links(page) == ["#title", "b.md", "#nowhere"]
    assert anchors(page) == {"title"}


def test_ci_runs_the_readmes_test_command():
    """The README's second command (the tests) is what .ci/run ends with, so a fresh clone that
    follows the README runs what CI runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", readme, flags=re.M | re.S)
    setup, tests = blocks[0].strip(), blocks[1].strip()
    assert setup == "pip install -e . && minigpt-tui"
    command = tests.split("&&")[-1].strip()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == command == "python -m pytest -q"
