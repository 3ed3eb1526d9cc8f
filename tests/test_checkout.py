"""The built-ins without an installation: a source checkout trains, and a ``plugins`` of the
user's that hides the built-in one is refused, naming both folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import eventrunner
from eventrunner import cli, compose, registry

ROOT = Path(eventrunner.__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("only_own_plugins")

# Runs in the copy: no eventrunner entry points, no editable-install finder, so everything
# eventrunner imports comes from the copy; then trains the built-in example for one epoch.
CHILD = textwrap.dedent(
    """\
    import importlib.metadata as metadata
    import sys
    from pathlib import Path

    here = Path.cwd().resolve()
    installed = metadata.entry_points

    def entry_points(**params):
        found = installed(**params)
        return metadata.EntryPoints(ep for ep in found if ep.group != "eventrunner.plugins")

    metadata.entry_points = entry_points
    sys.meta_path[:] = [
        finder for finder in sys.meta_path
        if not type(finder).__module__.startswith("__editable__")
    ]
    sys.path[:] = [entry for entry in sys.path if "__editable__" not in entry]

    import eventrunner
    import plugins
    from eventrunner import cli, registry

    assert Path(eventrunner.__file__).resolve().is_relative_to(here), eventrunner.__file__
    assert Path(plugins.__file__).resolve().is_relative_to(here), plugins.__file__
    assert metadata.entry_points(group="eventrunner.plugins") == metadata.EntryPoints(())
    builtins = registry.available()  # found by kind in the copy's plugins package
    assert "accuracy" in builtins and all(ep.dist is None for ep in builtins.values())
    status = cli.main(["run", "--example", "digits", "--set", "train.num_epochs=1"])
    assert status == 0, status
    print("trained from", Path(eventrunner.__file__).parent)
    """
)


def _copy_checkout(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("eventrunner", "plugins"):
        shutil.copytree(ROOT / folder, target / folder, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")


def test_an_uninstalled_checkout_trains_the_builtin_example(tmp_path):
    pytest.importorskip("sklearn")
    _copy_checkout(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"trained from {tmp_path.resolve() / 'eventrunner'}" in done.stdout
    assert "done: 1 epochs" in done.stdout


@pytest.fixture
def own_plugins_folder(tmp_path, monkeypatch):
    """A project with its own ``plugins/`` package, first on ``sys.path``."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "__init__.py").write_text("ALARMS = []\n")
    compose.builtin_plugins()  # imported, so that the built-in one is restored afterwards
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "plugins")
    registry.refresh()
    yield folder
    monkeypatch.undo()
    registry.refresh()


def test_a_plugins_folder_of_your_own_is_refused_naming_both(own_plugins_folder):
    with pytest.raises(compose.HiddenPluginsError) as info:
        compose.builtin_plugins()
    message = str(info.value)
    assert str(own_plugins_folder / "__init__.py") in message
    assert str(ROOT / "plugins") in message
    assert "rename it (e.g. my_plugins)" in message
    assert isinstance(info.value, ImportError)


def test_the_cli_says_so_without_a_traceback(own_plugins_folder, capsys):
    assert cli.main(["plugins"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eventrunner: error: 'import plugins' found ")
    assert str(own_plugins_folder) in err and "Traceback" not in err


def test_the_docs_say_what_to_do():
    text = (ROOT / "docs" / "plugins.md").read_text()
    assert "## A `plugins/` folder of your own" in text
    assert "my_plugins" in text
