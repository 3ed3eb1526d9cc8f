"""Writes ``docs/reference.md`` from the code: train()'s arguments, the runner's attributes,
the events and their signals, the built-in subscribers, the config sections and the Catalyst
names, so the reference cannot drift from them.

Run ``python docs/generate.py`` after changing a ``TrainSettings`` field, the ``RunState``
docstring, a subscriber or a config section; ``--check`` exits with status 1 when the file
is out of date. The output depends only on the code (no dates, paths or environment), so
two runs give the same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"

# The checkout's own packages, even when another copy of eventrunner is installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")  # :class:`~pkg.mod.Name` -> `Name`


def markdown(text: str) -> str:
    """reStructuredText inline markup of a docstring, as Markdown."""

    def role(match: re.Match[str]) -> str:
        target = match.group(2)
        return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"

    return _ROLE.sub(role, text).replace("``", "`")


def paragraphs(doc: str) -> list[str]:
    """A docstring as Markdown blocks: prose paragraphs on one line, ``::`` blocks fenced."""
    blocks: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        text = " ".join(" ".join(prose).split())
        if text.strip(":"):
            blocks.append(markdown(text))
        prose.clear()

    lines = doc.strip().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            flush()
        elif line.rstrip().endswith("::"):  # "Example::" -> "Example:" and a literal block
            prose.append(line.rstrip()[:-1])
            flush()
            body = []
            while i < len(lines) and (not lines[i].strip() or lines[i][:1] in " \t"):
                body.append(lines[i])
                i += 1
            blocks.append("```python\n" + textwrap.dedent("\n".join(body)).strip("\n") + "\n```")
        else:
            prose.append(line)
    flush()
    return blocks


def cell(text: object) -> str:
    """One table cell: on one line, its pipes escaped (GitHub reads them in code spans too)."""
    return " ".join(str(text).split()).replace("|", "\\|")


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # an object's default repr differs run to run


def code(text: object) -> str:
    return f"`{_ADDRESS.sub('', str(text))}`"


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(item) for item in row) + " |" for row in rows]
    return lines


def own_doc(obj: Any) -> str:
    """The object's own docstring (a class's, not one inherited from its base), cleaned."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return inspect.cleandoc(doc) if doc else ""


def summary(obj: Any) -> str:
    """The first paragraph of the object's own docstring, on one line."""
    paragraph = own_doc(obj).split("\n\n", 1)[0]
    return markdown(" ".join(paragraph.split())) or "(no docstring)"


def public_name(obj: Any) -> str:
    """``plugins.Name`` when the package exports it (module paths inside may move)."""
    package = obj.__module__.split(".", 1)[0]
    if getattr(sys.modules.get(package), obj.__name__, None) is obj:
        return f"{package}.{obj.__name__}"
    return f"{obj.__module__}.{obj.__qualname__}"


def signature_text(function: Any) -> str:
    """``(arg: type = default) -> type`` without ``self`` and without string quotes."""
    signature = inspect.signature(function)
    empty = inspect.Parameter.empty
    parts = [
        p.name
        + (f": {p.annotation}" if p.annotation is not empty else "")
        + (f" = {p.default!r}" if p.default is not empty else "")
        for p in signature.parameters.values()
        if p.name != "self"
    ]
    returns = signature.return_annotation
    return f"({', '.join(parts)})" + (f" -> {returns}" if returns is not empty else "")


# ------------------------------------------------------------------ train() arguments


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        return code(repr(field.default))
    if field.default_factory is not dataclasses.MISSING:
        return code(f"{getattr(field.default_factory, '__name__', 'factory')}()")
    return "required"


def train_arguments() -> list[str]:
    from eventrunner import settings

    fields = dataclasses.fields(settings.TrainSettings)
    groups = list(settings.GROUPS)
    groups += sorted({f.metadata.get("group", "other") for f in fields} - set(groups))
    lines = [
        "## `train()` arguments",
        "",
        "The keyword arguments of `runner.train()`, `runner.atrain()` and `runner.compose()`: "
        "the fields of `eventrunner.settings.TrainSettings` (frozen, validated before the "
        "first batch, with the argument named in the error). In a YAML config they go under "
        "`train:`, except the objects that have a section of their own.",
    ]
    for group in groups:
        members = [f for f in fields if f.metadata.get("group", "other") == group]
        if not members:
            continue
        lines += ["", f"### {group}", ""]
        rows = [
            (code(f.name), code(f.type), _default(f), markdown(f.metadata.get("doc", "")))
            for f in members
        ]
        lines += table(("argument", "type", "default", "what"), rows)
    return lines


# ------------------------------------------------------------------ runner attributes

_HEADING = re.compile(r"^(\S.*):$")
_NAME = re.compile(r"``(\w+)``")


def _sections(doc: str) -> list[tuple[str, str]]:
    """``Heading:`` lines of a docstring with their indented text, in order."""
    found: list[tuple[str, list[str]]] = []
    for line in doc.splitlines()[1:]:
        heading = _HEADING.match(line)
        if heading:
            found.append((heading.group(1), []))
        elif found and line.strip():
            found[-1][1].append(line.strip())
    return [(title, " ".join(body)) for title, body in found]


def runner_attributes() -> list[str]:
    from eventrunner import state

    doc = own_doc(state.RunState)
    annotations = inspect.get_annotations(state.RunState)
    writable = state.WRITABLE_FIELDS

    def rows(names: Iterable[str]) -> list[tuple[str, str, str]]:
        return [(code(n), code(annotations[n]), "writable" if n in writable else "") for n in names]

    lines = [
        "## Runner attributes",
        "",
        "What subscribers see of a run: `eventrunner.state.RunState`, the type of the `runner` "
        "a handler receives. " + markdown(doc.splitlines()[0] if doc else ""),
        "",
        "Fields marked *writable* are the ones a subscriber may declare in `Callback.writes` "
        '(`"loader_metrics"`, or one key of a dict field: `"loader_metrics.accuracy"`).',
    ]
    listed: set[str] = set()
    for title, body in _sections(doc):
        names = [n for n in dict.fromkeys(_NAME.findall(body)) if n in annotations]
        lines += ["", f"### {markdown(title)}", "", markdown(body)]
        new = [n for n in names if n not in listed]
        if new:
            lines += ["", *table(("attribute", "type", ""), rows(new))]
            listed.update(new)
    rest = [n for n in annotations if n not in listed]
    if rest:
        lines += ["", "### Other attributes", "", *table(("attribute", "type", ""), rows(rest))]
    methods = [
        (name, member)
        for name, member in vars(state.RunState).items()
        if inspect.isfunction(member) and not name.startswith("_")
    ]
    if methods:
        lines += ["", "### Methods", ""]
        lines += [f"- `{name}{signature_text(m)}`: {summary(m)}" for name, m in methods]
    return lines


# ------------------------------------------------------------------ events and signals


def events() -> list[str]:
    from eventrunner.signals import SIGNALS

    lines = [
        "## Events and signals",
        "",
        "The events in the order the loop first publishes them. Each is also a public blinker "
        "signal, `eventrunner.signals.<event>`, sent with `sender=runner` after the event's "
        "subscribers ([when to use which](guide.md#a-signal-receiver-or-a-callback)).",
        "",
    ]
    rows = [
        (code(event), code(f"on_{event}"), signal.__doc__ or "")
        for event, signal in SIGNALS.items()
    ]
    return lines + table(("event", "`Callback` method", "sent"), rows)


# ------------------------------------------------------------------ subscribers

_ORDER_IN_SOURCE = re.compile(r"order\s*=\s*Order\.([A-Z_]+)")


def _order_name(order: int) -> str:
    from eventrunner.events import Order

    if order in {o.value for o in Order}:
        return f"{order} (`Order.{Order(order).name}`)"
    if order > max(Order):
        return f"{order} (after every other subscriber)"
    return str(order)


def _instance(cls: type) -> Any:
    """The subscriber with its default arguments, or None when it has required ones."""
    try:
        return cls()
    except Exception:  # required arguments, a missing optional extra: read the class instead
        return None


def _order(cls: type, instance: Any) -> str:
    from eventrunner.events import Order

    if instance is not None:
        return _order_name(instance.order)
    try:  # a subscriber with required arguments: the order its constructor passes on
        found = _ORDER_IN_SOURCE.search(inspect.getsource(cls.__init__))
    except (OSError, TypeError):
        found = None
    if found and found.group(1) in Order.__members__:
        return _order_name(Order[found.group(1)].value)
    return "set by its constructor"


def _writes(cls: type) -> str:
    from eventrunner.events import Callback

    writes = getattr(cls, "writes", ())
    if isinstance(writes, Mapping):
        return "; ".join(
            f"{event}: {', '.join(map(code, names))}" for event, names in writes.items()
        )
    if writes:
        return ", ".join(map(code, writes))
    declared = any("writes" in k.__dict__ for k in cls.__mro__ if k is not Callback)
    return "no run-state field (declared)" if declared else ""


def _events(cls: type) -> str:
    from eventrunner.events import EVENTS, Callback

    handled = [
        e for e in EVENTS if getattr(cls, f"on_{e}", None) is not getattr(Callback, f"on_{e}")
    ]
    return ", ".join(map(code, handled)) or "its own (see the class)"


def subscriber(cls: type) -> list[str]:
    from eventrunner.registry import parameters

    instance = _instance(cls)
    kind = getattr(cls, "kind", None)
    title = f"`{kind}`: {cls.__name__}" if kind else cls.__name__
    doc = own_doc(cls) or own_doc(sys.modules[cls.__module__])
    facts = [
        f"- class: `{public_name(cls)}`",
        f"- order: {_order(cls, instance)}",
        f"- events: {_events(cls)}",
    ]
    if instance is not None and instance.loader_filter:
        facts.append(f"- loaders: {code(list(instance.loader_filter.names))}")
    if _writes(cls):
        facts.append(f"- writes: {_writes(cls)}")
    if getattr(cls, "background", False):
        facts.append("- runs in the background")
    lines = ["", f"#### {title}", ""]
    for block in paragraphs(doc) or ["(no docstring)"]:
        lines += [block, ""]
    lines += facts
    params = parameters(cls)
    if params:
        docs = any(p.doc for p in params)  # a "what" column only when a docstring has Args:
        rows = [
            (
                code(p.variadic + p.name),
                code(p.annotation) if p.annotation else "",
                code(p.default) if p.default is not None else "" if p.variadic else "required",
                *([markdown(p.doc or "")] if docs else []),
            )
            for p in params
        ]
        lines += ["", *table(("parameter", "type", "default", *(["what"] if docs else [])), rows)]
    return lines


def subscribers() -> list[str]:
    import plugins
    from eventrunner.compose import default_classes
    from eventrunner.config import FILTER_KEYS
    from eventrunner.events import Callback, Order

    defaults = list(default_classes().values())
    public = [getattr(plugins, name) for name in plugins.__all__]
    others = [
        c for c in public if inspect.isclass(c) and issubclass(c, Callback) and c not in defaults
    ]
    rest = [c for c in public if not (inspect.isclass(c) and issubclass(c, Callback))]
    lines = [
        "## Subscribers",
        "",
        "The built-in subscribers (`import plugins`), by registry name (`kind`). A subscriber "
        "of the same `kind` in `callbacks=` replaces the default; in a config, every subscriber "
        f"also takes the filters {', '.join(map(code, FILTER_KEYS))}. `eventrunner plugins NAME` "
        "prints the same for any registered subscriber, third-party ones included.",
        "",
        "### Orders",
        "",
        "`eventrunner.Order`: lower runs first; ties keep registration order (the defaults "
        "before yours). What each place is for: [the order table](guide.md#the-order-table).",
        "",
    ]
    lines += table(("`Order`", "value"), ((code(o.name), o.value) for o in Order))
    lines += [
        "",
        "### Defaults",
        "",
        "The classes `train()` composes its defaults from (`eventrunner.compose."
        "default_classes()`): which of them a run gets depends on its arguments, and some run "
        "only when you add them ([which, when](guide.md#defaults)).",
    ]
    for cls in defaults:
        lines += subscriber(cls)
    if others:
        lines += [
            "",
            "### Other subscribers",
            "",
            "Never composed by default: add them to callbacks.",
        ]
        for cls in others:
            lines += subscriber(cls)
    if rest:
        lines += ["", "### Other public names in `plugins`", ""]
        lines += [f"- `{public_name(obj)}`: {summary(obj)}" for obj in rest]
    return lines


# ------------------------------------------------------------------ config sections

_SECTION_PREFIX = re.compile(r"^`\w+:`\s*[—-]*\s*")


def _section_doc(name: str) -> str:
    """What a section holds: its builder's docstring (``build_<name>``, ``check_train``), or
    the docstring of the ``train()`` argument of the same name."""
    from eventrunner import config, settings

    builder = getattr(config, "check_train" if name == "train" else f"build_{name}", None)
    if builder is not None and builder.__doc__:
        text = _SECTION_PREFIX.sub("", summary(builder))  # "`model:` — the model" -> "the model"
        return text[:1].upper() + text[1:]
    fields = {f.name: f for f in dataclasses.fields(settings.TrainSettings)}
    if name in fields:
        return f"`train({name}=...)`: {markdown(fields[name].metadata.get('doc', ''))}"
    return ""


def config_sections() -> list[str]:
    from eventrunner import config, settings

    sections = list(config.SECTIONS)
    train_keys = [n for n in settings.field_names() if n not in sections]
    lines = [
        "## Config sections",
        "",
        "The top-level sections of a YAML config, in the order they are built (how to write "
        "them: [config.md](config.md)).",
        "",
    ]
    rows = []
    for name in sections:
        what = _section_doc(name)
        if name == "train":
            what = f"{what} Keys: {', '.join(map(code, train_keys))}.".strip()
        rows.append((code(name), what))
    return lines + table(("section", "what"), rows)


# ------------------------------------------------------------------ Catalyst names


def catalyst_names() -> list[str]:
    from eventrunner.catalyst import metrics as catalyst_metrics
    from eventrunner.catalyst import utils as catalyst_utils
    from eventrunner.catalyst.names import ALL, NOT_PORTED, resolve

    def where(name: str) -> str:
        obj = resolve(name, ALL, "eventrunner.dl")
        cls = obj if inspect.isclass(obj) else type(obj)
        return f"{code(public_name(cls))}: {summary(cls)}"

    lines = [
        "## Catalyst names",
        "",
        "Every name of Catalyst 22.04's `catalyst.dl`, as `eventrunner.dl` gives it (the same "
        "objects `eventrunner` and `plugins` export), and what it is. How to port a program "
        "and what differs on purpose: [catalyst.md](catalyst.md).",
        "",
    ]
    lines += table(("`dl.` name", "eventrunner object"), ((code(n), where(n)) for n in ALL))
    lines += ["", "Not ported (`dl.<name>` raises an `AttributeError` that says so):", ""]
    lines += [f"- `{name}`: {text}" for name, text in NOT_PORTED.items()]
    for module, names in (
        ("metrics", catalyst_metrics.__all__),
        ("utils", catalyst_utils.__all__),
    ):
        lines += [
            "",
            f"`eventrunner.{module}` gives `catalyst.{module}`' names: "
            + ", ".join(map(code, sorted(names)))
            + ".",
        ]
    return lines


# ------------------------------------------------------------------ the page

PARTS = (train_arguments, runner_attributes, events, subscribers, config_sections, catalyst_names)


def render() -> str:
    lines = [
        "# Reference",
        "",
        "<!-- Generated by `python docs/generate.py` from the code's dataclasses and "
        "docstrings: edit those, not this file. -->",
        "",
        "Contents: [train() arguments](#train-arguments) · "
        "[Runner attributes](#runner-attributes) · [Events and signals](#events-and-signals) · "
        "[Subscribers](#subscribers) · [Config sections](#config-sections) · "
        "[Catalyst names](#catalyst-names)",
        "",
    ]
    for part in PARTS:
        lines += [*part(), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
        if current != text:
            print(f"{REFERENCE} is out of date: run python docs/generate.py", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
