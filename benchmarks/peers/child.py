"""One measured run in a fresh process: ``python child.py FRAMEWORK WORKLOAD EPOCHS OUT.json``.

compare.py starts one of these per (repetition, workload, framework), so that no framework's
imports, threads or global state leak into another's numbers. It times ``import torch`` and the
framework's import separately, runs ``<module>.run(workload, epochs)``, reads the process's peak
RSS, and writes one JSON object to OUT.json (``status`` is ``ok``, ``import-failed`` or
``run-failed``; failures carry ``error`` and ``traceback``). EPOCHS may be ``-`` for the
workload's default.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))

MODULES = {
    "plain": "plain",
    "eventrunner": "eventrunner_run",
    "catalyst": "catalyst_run",
    "ignite": "ignite_run",
    "lightning": "lightning_run",
}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _failure(status: str, exc: BaseException) -> dict:
    return {
        "status": status,
        "error": f"{type(exc).__name__}: {exc}".strip()[:500],
        "traceback": traceback.format_exc()[-4000:],
    }


def main(argv: list[str]) -> int:
    framework, workload, epochs_arg, out_path = argv
    epochs = None if epochs_arg in ("-", "") else int(epochs_arg)
    sys.path.insert(0, HERE)
    out: dict = {"framework": framework, "workload": workload, "python": sys.version.split()[0]}

    t = time.perf_counter()
    import torch  # noqa: F401  (timed on its own: the same for everyone)
    import workloads  # noqa: F401

    out["torch_import_s"] = time.perf_counter() - t

    try:
        t = time.perf_counter()
        module = importlib.import_module(MODULES[framework])
        out["import_s"] = time.perf_counter() - t
    except BaseException as exc:
        out.update(_failure("import-failed", exc))
    else:
        try:
            out["versions"] = module.versions()
        except Exception as exc:
            out["versions"] = {"error": repr(exc)}
        try:
            out.update(module.run(workload, epochs))
            out["status"] = "ok"
        except BaseException as exc:
            out.update(_failure("run-failed", exc))
    out["peak_rss_mib"] = _peak_rss_mib()
    with open(out_path, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
