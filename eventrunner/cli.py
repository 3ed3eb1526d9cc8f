"""The ``eventrunner`` command: ``run`` a YAML config, list ``plugins``, ``plot`` a logdir.

eventrunner run CONFIG.yaml [--set key.path=value ...] [--dry-run] [--overwrite] [--resume auto]
eventrunner run --example digits
eventrunner plugins [NAME ...]
eventrunner plot LOGDIR ...
eventrunner resume LOGDIR [--set key.path=value ...]
eventrunner check-resume CONFIG.yaml [--kills N]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import eventrunner
from eventrunner import registry
from eventrunner.checkpoint import CheckpointError
from eventrunner.compose import HiddenPluginsError
from eventrunner.config import (
    ConfigError,
    build,
    example_names,
    example_path,
    import_paths,
    load_config,
)
from eventrunner.config.saved import saved_config
from eventrunner.logdir import LogdirInUseError

_EPILOG = """\
examples:
  eventrunner run --example digits
  eventrunner run --example digits --set train.num_epochs=3 --set optimizer.lr=0.01
  eventrunner run my_config.yaml --dry-run
  eventrunner plugins early_stopping
  eventrunner check-resume --example digits --kills 3
"""

_RUN_DESCRIPTION = """\
Build everything a YAML config describes and train it.

A config is code: every _target_ and subscriber, in the file or in a --set value, names a
Python object that is imported and called while the config is built. Only run configs you
trust; --dry-run builds every object too.

Imports: while the config is built and trained, its folder and then the working directory
are first on sys.path, so a my_model.py beside the config (or in the working directory) is
found as `_target_: my_model.MyModel`, as with `python -m eventrunner`.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventrunner",
        description="Run trainings described in YAML; list the subscribers you can use.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=eventrunner.__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser(
        "run",
        help="train from a YAML config (or a built-in example)",
        description=_RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("config", nargs="?", help="path of the YAML config")
    source.add_argument(
        "--example",
        metavar="NAME",
        help=f"a built-in example config ({', '.join(example_names())})",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (typed as YAML: 3, 0.1, true, null, [1, 3]); repeatable",
    )
    run.add_argument(
        "--profile",
        action="store_true",
        help="time every subscriber per event and each batch phase; print a table at the end",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="build every object (the config's code runs), print the composed pipeline, "
        "and exit without training",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="allow a new run in a logdir that already holds a run (same as --set "
        "train.overwrite=true); without it, or resume=, such a run is refused",
    )

    run.add_argument(
        "--resume",
        metavar="PATH|auto",
        help="continue from a checkpoint (same as --set train.resume=PATH); 'auto': from the "
        "newest one in the logdir if there is one, else start a new run",
    )

    resume = commands.add_parser(
        "resume",
        help="continue a run from its logdir alone (the config.yaml `run` saved there)",
        description="Continue the run in LOGDIR: its saved config.yaml with resume=auto.",
    )
    resume.add_argument("logdir", metavar="LOGDIR")
    resume.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a value of the saved config (train.num_epochs=20 trains further)",
    )

    plugins = commands.add_parser(
        "plugins",
        help="list the registered subscribers and their parameters",
        description="Subscribers registered in the 'eventrunner.plugins' entry-point group.",
    )
    plugins.add_argument("names", nargs="*", metavar="NAME", help="show only these")

    commands.add_parser(
        "check-resume",
        help="kill a config's training at random batches, resume, compare bitwise "
        "(eventrunner check-resume --help)",
        add_help=False,
    )
    commands.add_parser(
        "plot",
        help="draw a logdir's metric curves to a PNG (eventrunner plot --help)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventrunner`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "plot":
        return _plot(argv[1:])
    if argv and argv[0] == "check-resume":
        from eventrunner.check_resume import main as check_resume

        return check_resume(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            overrides = list(args.overrides)
            overrides += ["train.profile=true"] if args.profile else []
            overrides += ["train.overwrite=true"] if args.overwrite else []
            overrides += [f"train.resume={args.resume}"] if args.resume else []
            # The config's own modules: its folder (not the shipped examples') and the cwd.
            with import_paths(args.config):
                return _run(args.config, args.example, overrides, args.dry_run)
        if args.command == "resume":
            config, source = saved_config(args.logdir)
            overrides = [*args.overrides, f"train.logdir={args.logdir}", "train.resume=auto"]
            with import_paths(source or config):
                return _run(str(config), None, overrides, False, source=source)
        return _plugins(args.names)
    except (
        ConfigError,
        FileNotFoundError,
        IsADirectoryError,
        CheckpointError,
        LogdirInUseError,
        HiddenPluginsError,
    ) as error:
        # A refused run (bad config, missing file, a checkpoint that is not one or does not
        # fit, a logdir holding a run, a 'plugins' of the user's hiding the built-ins) is a
        # message, not a traceback; it says what to do.
        _error(str(error))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _error(message: str) -> None:
    print(f"eventrunner: error: {message}", file=sys.stderr)


def _run(
    config: str | None,
    example: str | None,
    overrides: list[str],
    dry_run: bool,
    source: Path | None = None,
) -> int:
    try:
        path = example_path(example) if example else config
    except ValueError as error:
        _error(str(error))
        return 2
    assert path is not None
    label = f"example {example!r}" if example else str(path)
    try:
        config = load_config(path, overrides)
        train = config.get("train") or {}
        if train.get("resume") == "auto" and train.get("logdir") is None:
            raise ConfigError(
                "train.resume",
                "a train.logdir to resume from",
                "none",
                message="'auto' resumes from train.logdir/checkpoints, but train.logdir is not "
                "set (--set train.logdir=PATH)",
            )
        _progress_bars_on_a_terminal(config)
        experiment = build(config)  # raises every config error, before the summary
        experiment.source = source or Path(path)  # saved with the config in the logdir
        if dry_run:
            # A run is composed (and seeded) once: here for a dry run, else by train() alone.
            pipeline = experiment.describe()
    except ConfigError as error:
        _error(f"{label}: {error}")
        return 2
    if dry_run:
        print(f"eventrunner: {label} (dry run: composed, not trained)\n")
        print(pipeline)
        return 0
    print(f"eventrunner: {label}")
    print(textwrap.indent(experiment.summary(), "  "), flush=True)
    start = time.perf_counter()
    runner = experiment.run()
    seconds = time.perf_counter() - start
    early = f" (stopped early, of {runner.num_epochs})" if runner.need_early_stop else ""
    where = f"; logs in {runner.logdir}" if runner.logdir else ""
    print(f"done: {runner.epoch_step} epochs{early} in {seconds:.1f} s{where}", flush=True)
    return 0


def _progress_bars_on_a_terminal(config: dict) -> None:
    # On a terminal a progress bar is wanted unless the config says otherwise.
    train = config.get("train")
    if sys.stderr.isatty() and isinstance(train, dict) and "verbose" not in train:
        train["verbose"] = True


def _plugins(names: Sequence[str]) -> int:
    out = sys.stdout
    registered = registry.available()
    for name in names:
        if name not in registered and not registry.looks_like_import_path(name):
            try:
                registry.resolve(name)  # raises, with close matches and the registered names
            except ValueError as error:
                _error(str(error))
                return 2
    shown = list(names) or list(registered)
    print(
        f"Subscribers registered in the '{registry.ENTRY_POINT_GROUP}' entry-point group. In a "
        "config's callbacks list, give one by name with its parameters; every subscriber also "
        "takes order, loaders and every (filters).\n",
        file=out,
    )
    for name in shown:
        info = registry.describe(name)
        origin = f"{info.target}" + (f"  [{info.distribution}]" if info.distribution else "")
        print(f"{name}  ->  {origin}", file=out)
        if info.error:
            print(f"    failed to load: {info.error}", file=out)
        if info.summary:
            print(
                textwrap.fill(info.summary, 96, initial_indent="    ", subsequent_indent="    "),
                file=out,
            )
        for param in info.parameters:
            line = f"      {param}"
            if param.doc:
                line += f"  -- {param.doc}"
            print(line, file=out)
        if not info.parameters and not info.error:
            print("      (no parameters)", file=out)
        print(file=out)
    return 0


def _plot(argv: list[str]) -> int:
    try:
        plot = importlib.import_module("eventrunner.plot")
    except ModuleNotFoundError as error:
        if error.name != "eventrunner.plot":
            raise
        _error("`eventrunner plot` is not available in this installation (no eventrunner.plot)")
        return 2
    status = plot.main(argv)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
