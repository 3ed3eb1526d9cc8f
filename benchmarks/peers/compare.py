"""Run every workload through every framework, interleaved, several times; print a table.

    benchmarks/peers/.venv/bin/python benchmarks/peers/compare.py [--reps 5]
        [--workloads small,large,slow] [--frameworks plain,eventrunner,catalyst,ignite,lightning]
        [--epochs N] [--json results.json] [--markdown]

Each (repetition, workload, framework) runs in a fresh process (child.py) with the peers' venv
Python (``--python``; by default ``.venv/bin/python`` beside this file). Within a repetition the
frameworks of a workload run one after the other, in an order rotated each repetition, so slow drift
of the machine spreads over all of them. Only the standard library is used here.

Columns: median per-batch time over the repetitions (train and valid batches of the timed epochs,
see workloads.py), its ratio to the plain loop's median, the median of the per-repetition ratios to
the plain run of the same repetition ("paired"), the fastest repetition, the spread (max - min over
repetitions, in % of the median), median peak RSS of the process, median import time of the
framework (after torch),
median wall time of the whole fit call (set-up and tear-down included), and the final valid loss
and accuracy. ``same`` says whether those final metrics equal the plain loop's (the runs see the
same
model, data, batch order and optimizer, so they should, up to float rounding).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FRAMEWORKS = ["plain", "eventrunner", "catalyst", "ignite", "lightning"]
WORKLOADS = ["small", "large", "slow"]
# the name setup_env.sh records each framework's installation under
INSTALL_NAMES = {
    "eventrunner": "eventrunner",
    "catalyst": "catalyst",
    "ignite": "pytorch-ignite",
    "lightning": "lightning",
}


def _default_python() -> str:
    venv = os.path.join(HERE, ".venv", "bin", "python")
    return venv if os.path.exists(venv) else sys.executable


def _install_status() -> dict[str, tuple[str, str]]:
    """name -> (status, detail) from setup_env.sh's install_status.tsv (if any)."""
    path = os.path.join(HERE, "install_status.tsv")
    status: dict[str, tuple[str, str]] = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 2:
                    status[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return status


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_child(
    python: str, framework: str, workload: str, epochs: int | None, timeout: float
) -> dict:
    fd, out_path = tempfile.mkstemp(prefix=f"peers-{framework}-{workload}-", suffix=".json")
    os.close(fd)
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
        TOKENIZERS_PARALLELISM="false",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("PYTHONPATH", None)
    cmd = [
        python,
        os.path.join(HERE, "child.py"),
        framework,
        workload,
        "-" if epochs is None else str(epochs),
        out_path,
    ]
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=timeout
        )
        with open(out_path) as f:
            res = json.load(f)
    except subprocess.TimeoutExpired:
        res = {"status": "run-failed", "error": f"timed out after {timeout:.0f} s"}
    except (OSError, ValueError) as exc:  # the child died before writing its result
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:]
        res = {
            "status": "run-failed",
            "error": f"child exited {proc.returncode}: {' '.join(tail) or exc}",
        }
    finally:
        with contextlib.suppress(OSError):
            os.unlink(out_path)
    res["process_s"] = time.perf_counter() - t
    res["loadavg_1min_before"] = load_before
    res.setdefault("framework", framework)
    res.setdefault("workload", workload)
    return res


def _why(results: list[dict], framework: str, install: dict) -> str:
    name = INSTALL_NAMES.get(framework)
    st = install.get(name) if name else None
    first = results[0] if results else {}
    err = first.get("error", "no result")
    if first.get("status") == "import-failed":
        if st and st[0] != "ok":
            return f"not installed: {st[1]}"[:160]
        return f"import failed: {err}"[:160]
    return f"run failed: {err}"[:160]


def summarise(
    all_results: list[dict], workloads: list[str], frameworks: list[str], install: dict
) -> list[dict]:
    rows = []
    for wl in workloads:
        plain_ok = [
            r
            for r in all_results
            if r["workload"] == wl and r["framework"] == "plain" and r["status"] == "ok"
        ]
        plain_med = statistics.median(r["per_batch_us"] for r in plain_ok) if plain_ok else None
        plain_ref = plain_ok[0] if plain_ok else None
        for fw in frameworks:
            rs = [r for r in all_results if r["workload"] == wl and r["framework"] == fw]
            ok = [r for r in rs if r.get("status") == "ok"]
            row = {"workload": wl, "framework": fw, "reps": len(ok), "failed": len(rs) - len(ok)}
            if not ok:
                row["why"] = _why(rs, fw, install)
                rows.append(row)
                continue
            per = [r["per_batch_us"] for r in ok]
            med = statistics.median(per)
            plain_by_rep = {r.get("rep"): r["per_batch_us"] for r in plain_ok}
            paired = [
                r["per_batch_us"] / plain_by_rep[r.get("rep")]
                for r in ok
                if r.get("rep") in plain_by_rep
            ]
            last = ok[-1]
            row.update(
                per_batch_us=med,
                min_us=min(per),
                ratio=(med / plain_med) if plain_med else None,
                paired_ratio=statistics.median(paired) if paired else None,
                spread_pct=(max(per) - min(per)) / med * 100.0,
                peak_rss_mib=statistics.median(r["peak_rss_mib"] for r in ok),
                import_s=statistics.median(r["import_s"] for r in ok),
                fit_s=statistics.median(r["fit_s"] for r in ok if r.get("fit_s") is not None),
                valid_loss=last["valid_loss"],
                valid_acc=last["valid_acc"],
                train_loss=last.get("train_loss"),
                versions=last.get("versions", {}),
            )
            if plain_ref is not None:
                row["same"] = (
                    abs(last["valid_loss"] - plain_ref["valid_loss"]) < 1e-4
                    and abs(last["valid_acc"] - plain_ref["valid_acc"]) < 1e-6
                )
            if rs and len(ok) < len(rs):
                row["why"] = f"{len(rs) - len(ok)} of {len(rs)} runs failed: " + _why(
                    [r for r in rs if r.get("status") != "ok"], fw, install
                )
            rows.append(row)
    return rows


def _fmt_table(rows: list[dict], markdown: bool) -> str:
    headers = [
        "workload",
        "framework",
        "per batch",
        "x plain",
        "paired",
        "min",
        "spread",
        "peak RSS",
        "import",
        "fit",
        "valid loss",
        "valid acc",
        "same",
    ]
    lines = []
    for row in rows:
        if "per_batch_us" not in row:
            lines.append([row["workload"], row["framework"], row.get("why", "failed")])
            continue
        ratio = row.get("ratio")
        same = row.get("same")
        lines.append(
            [
                row["workload"],
                row["framework"],
                f"{row['per_batch_us']:.0f} us",
                "-" if ratio is None else f"{ratio:.2f}x",
                "-" if row.get("paired_ratio") is None else f"{row['paired_ratio']:.2f}x",
                f"{row['min_us']:.0f} us",
                f"{row['spread_pct']:.0f}%",
                f"{row['peak_rss_mib']:.0f} MiB",
                f"{row['import_s']:.2f} s",
                f"{row['fit_s']:.2f} s",
                f"{row['valid_loss']:.4f}",
                f"{row['valid_acc']:.4f}",
                "-" if same is None else ("yes" if same else "NO"),
            ]
        )
    widths = [len(h) for h in headers]
    for ln in lines:
        if len(ln) == len(headers):
            widths = [max(w, len(c)) for w, c in zip(widths, ln, strict=True)]
    out = []
    if markdown:
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "|".join("---" for _ in headers) + "|")
        for ln in lines:
            if len(ln) != len(headers):
                ln = ln + [""] * (len(headers) - len(ln))
            out.append("| " + " | ".join(ln) + " |")
    else:
        out.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        out.append("  ".join("-" * w for w in widths))
        for ln in lines:
            if len(ln) != len(headers):
                out.append(
                    "  ".join(c.ljust(w) for c, w in zip(ln[:2], widths[:2], strict=True))
                    + "  "
                    + ln[2]
                )
            else:
                out.append("  ".join(c.ljust(w) for c, w in zip(ln, widths, strict=True)))
    return "\n".join(out)


def _header(args, rows: list[dict], install: dict, results: list[dict]) -> str:
    versions: dict[str, str] = {}
    for row in rows:
        for k, v in (row.get("versions") or {}).items():
            if k != "error":
                versions.setdefault(k, v)
    for name, (st, detail) in sorted(install.items()):
        if st == "ok" and detail and name not in versions:
            versions[name] = detail
    lines = [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: {_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}; torch threads: 1, loaders num_workers=0",
        f"python: {args.python}",
        "load average (1 min) before the runs: "
        + _load_summary([r["loadavg_1min_before"] for r in results if "loadavg_1min_before" in r])
        + f" on {os.cpu_count()} CPUs (anything else running skews the numbers)",
        "versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        f"reps: {args.reps} (interleaved); per batch = median over reps of the timed window / "
        "batches (train + valid, epochs 2..N-1)",
    ]
    return "\n".join(lines)


def _load_summary(loads: list[float]) -> str:
    if not loads:
        return "-"
    return f"median {statistics.median(loads):.2f}, max {max(loads):.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="total epochs per run (>= 3); default: each workload's own",
    )
    p.add_argument(
        "--python",
        default=_default_python(),
        help="interpreter for the runs (default: the peers' .venv)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    p.add_argument(
        "--json",
        default=os.path.join(HERE, "results.json"),
        help="where to write the raw results ('' for nowhere)",
    )
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)

    workloads = [w for w in args.workloads.split(",") if w]
    frameworks = [f for f in args.frameworks.split(",") if f]
    if args.epochs is not None and args.epochs < 3:
        p.error("--epochs must be >= 3 (warm-up epoch, >= 1 timed epoch, last epoch)")
    for w in workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}; known: {', '.join(WORKLOADS)}")
    for f in frameworks:
        if f not in FRAMEWORKS:
            p.error(f"unknown framework {f!r}; known: {', '.join(FRAMEWORKS)}")
    if "plain" not in frameworks:
        frameworks.insert(0, "plain")  # the ratios need it
    install = _install_status()

    results: list[dict] = []
    broken: dict[str, str] = {}  # framework -> import error: not retried
    t_all = time.perf_counter()
    for rep in range(args.reps):
        for wl in workloads:
            k = rep % len(frameworks)
            order = frameworks[k:] + frameworks[:k]
            for fw in order:
                if fw in broken:
                    results.append(
                        {
                            "framework": fw,
                            "workload": wl,
                            "rep": rep,
                            "status": "import-failed",
                            "error": broken[fw],
                        }
                    )
                    continue
                res = run_child(args.python, fw, wl, args.epochs, args.timeout)
                res["rep"] = rep
                results.append(res)
                if res.get("status") == "import-failed":
                    broken[fw] = res.get("error", "")
                msg = (
                    f"{res['per_batch_us']:.0f} us/batch"
                    if res.get("status") == "ok"
                    else f"{res.get('status')}: {res.get('error', '')[:100]}"
                )
                print(
                    f"[rep {rep + 1}/{args.reps}] {wl:<6} {fw:<12} {msg}",
                    file=sys.stderr,
                    flush=True,
                )
    rows = summarise(results, workloads, frameworks, install)
    print(_header(args, rows, install, results))
    print(f"total time: {time.perf_counter() - t_all:.0f} s")
    print()
    print(_fmt_table(rows, args.markdown))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "runs": results, "install": install}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
