"""The docs stay true to the code: the generated reference is current, links resolve, and the
README stays a short front page with its quick start intact."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

from eventrunner.settings import TrainSettings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
QUICK_START = (
    "python -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 "
    '&& pip install -e ".[dev]"',
    "eventrunner run --example digits",
    "python -m pytest -q",
)


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered(generator) -> str:
    return generator.render()


def test_the_reference_is_current(rendered):
    current = (DOCS / "reference.md").read_text(encoding="utf-8")
    assert current == rendered, "docs/reference.md is out of date: run python docs/generate.py"


def test_the_reference_is_deterministic(generator, rendered):
    assert generator.render() == rendered


def test_every_train_argument_is_in_the_reference(rendered):
    missing = [
        field.name
        for field in dataclasses.fields(TrainSettings)
        if f"| `{field.name}` |" not in rendered
    ]
    assert not missing, f"train() arguments missing from docs/reference.md: {missing}"


def test_every_train_argument_has_a_doc_and_a_group():
    from eventrunner.settings import GROUPS

    bad = [
        field.name
        for field in dataclasses.fields(TrainSettings)
        if not field.metadata.get("doc") or field.metadata.get("group") not in GROUPS
    ]
    assert not bad, f"TrainSettings fields without metadata doc/group (one of {GROUPS}): {bad}"


def test_every_runner_attribute_is_in_the_reference(rendered):
    from eventrunner.state import RunState

    missing = [
        name for name in inspect.get_annotations(RunState) if f"| `{name}` |" not in rendered
    ]
    assert not missing, f"RunState attributes missing from docs/reference.md: {missing}"


def test_every_event_and_builtin_subscriber_is_in_the_reference(rendered):
    import plugins
    from eventrunner.events import EVENTS

    missing = [event for event in EVENTS if f"| `{event}` |" not in rendered]
    missing += [name for name in plugins.__all__ if f"`plugins.{name}`" not in rendered]
    assert not missing, f"missing from docs/reference.md: {missing}"


def test_the_check_mode_agrees_with_the_test(generator, capsys):
    assert generator.main(["--check"]) == 0, capsys.readouterr().err


def test_the_readme_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    unlinked = [
        page.name for page in sorted(DOCS.glob("*.md")) if f"](docs/{page.name}" not in text
    ]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_the_readme_is_a_short_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 350, f"README.md has {len(lines)} lines; move details to docs/"


def test_the_quick_start_commands_are_unchanged():
    text = README.read_text(encoding="utf-8")
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == list(QUICK_START)


_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)


def _prose(path: Path) -> str:
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for heading in _HEADING.findall(_prose(path)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in found:
            n += 1
            anchor = f"{slug}-{n}"
        found.add(anchor)
    return found


def _relative_links(path: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_CODE.sub("", _prose(path)))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)
    ]


@pytest.mark.parametrize(
    "page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_relative_links_point_at_files_in_the_repository(page):
    broken = []
    for target in _relative_links(page):
        name, _, anchor = target.partition("#")
        resolved = (page.parent / name).resolve() if name else page
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.name}: broken links: {broken}"
