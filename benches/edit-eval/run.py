#!/usr/bin/env python3
"""hearth's edit benchmark: real edit tasks on code from PyPI wheels, each checked by a test.

For every task in tasks.json it copies the pristine packages into a scratch project, checks that the task's test
fails there (a task whose test passes before the edit proves nothing), runs `hearth edit FILE -p INSTRUCTION --yes`
as a user would, and runs the test again. It reports the apply rate (the edit was written), the success rate (the
test passes) and how many edits needed retries.

    cargo build --release -p hearth
    python3 benches/edit-eval/run.py [-m MODEL] [--format auto|diff|whole] [--only ID ...] [--out FILE.json]

Wheels are fetched with pip (checked against their SHA-256) into ~/.cache/hearth/edit-eval/.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth" / "edit-eval"


def fetch(name: str, spec: dict) -> Path:
    """The wheel for `name`, downloaded once and checked against its SHA-256."""
    wheels = CACHE / "wheels"
    wheel = wheels / spec["wheel"]
    if not wheel.exists():
        version = spec["wheel"].split("-")[1]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
             # Pure-Python wheels only (charset-normalizer also ships compiled ones).
             "--implementation", "py", "--abi", "none", "--platform", "any", "--python-version", "3.11",
             "--dest", str(wheels), f"{name}=={version}"],
            check=True,
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != spec["sha256"]:
        sys.exit(f"{wheel}: SHA-256 {digest} is not the pinned {spec['sha256']}")
    return wheel


def pristine(spec: dict) -> Path:
    """A directory holding every package of the benchmark, unpacked."""
    site = CACHE / "site"
    if not site.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=CACHE))
        for group in ("packages", "support"):
            for name, wheel_spec in spec[group].items():
                with zipfile.ZipFile(fetch(name, wheel_spec)) as z:
                    z.extractall(staging)
        staging.rename(site)
    return site


def run_test(project: Path, test: str) -> tuple[bool, str]:
    result = subprocess.run(
        [sys.executable, "-c", test], cwd=project, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(project), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return result.returncode == 0, (result.stderr.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hearth", default=str(ROOT / "target" / "release" / "hearth"))
    parser.add_argument("-m", "--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--format", default="auto", choices=["auto", "diff", "whole"])
    parser.add_argument("--retrieval", action="store_true", help="retrieve project code too (slower)")
    parser.add_argument("--only", nargs="*", help="task ids to run")
    parser.add_argument("--out", help="write per-task results as JSON here")
    args = parser.parse_args()

    spec = json.loads((HERE / "tasks.json").read_text())
    site = pristine(spec)
    tasks = [t for t in spec["tasks"] if not args.only or t["id"] in args.only]
    results = []
    scratch = Path(tempfile.mkdtemp(prefix="hearth-edit-eval-"))
    for i, task in enumerate(tasks, 1):
        project = scratch / task["id"]
        shutil.copytree(site, project)
        passes_before, _ = run_test(project, task["test"])
        if passes_before:
            sys.exit(f"task {task['id']}: its test passes before any edit, so it cannot tell a right edit")
        command = [args.hearth, "edit", task["file"], "-p", task["instruction"], "--yes", "-q",
                   "--format", args.format, "-m", args.model, "--project", str(project)]
        if not args.retrieval:
            command.append("--no-retrieval")
        started = time.monotonic()
        edit = subprocess.run(command, cwd=project, capture_output=True, text=True)
        seconds = time.monotonic() - started
        answers = re.findall(r"^answer (\d+): (.*)$", edit.stderr, re.MULTILINE)
        original = (site / task["file"]).read_text()
        applied = edit.returncode == 0 and (project / task["file"]).read_text() != original
        passed, failure = run_test(project, task["test"]) if applied else (False, "")
        result = {
            "id": task["id"], "applied": applied, "passed": passed, "answers": len(answers),
            "seconds": round(seconds, 1), "format": re.search(r"\((\w+) format\)", edit.stderr).group(1)
            if re.search(r"\((\w+) format\)", edit.stderr) else "?",
            "error": "" if applied else (edit.stderr.strip().splitlines() or [""])[-1],
            "test_failure": failure if applied and not passed else "",
        }
        results.append(result)
        mark = "pass" if passed else ("applied, test fails" if applied else "not applied")
        print(f"[{i}/{len(tasks)}] {task['id']}: {mark} · {len(answers)} answer(s) · {result['format']} · "
              f"{seconds:.0f} s", flush=True)
        if result["error"]:
            print(f"    {result['error']}", flush=True)
        if result["test_failure"]:
            print(f"    {result['test_failure']}", flush=True)
        shutil.rmtree(project)
    n = len(results)
    applied = sum(r["applied"] for r in results)
    passed = sum(r["passed"] for r in results)
    retried = sum(r["answers"] > 1 for r in results)
    print(f"\n{n} tasks · applied {applied}/{n} ({100 * applied / n:.0f}%) · passed {passed}/{n} "
          f"({100 * passed / n:.0f}%) · needed retries {retried} · "
          f"{sum(r['seconds'] for r in results) / 60:.1f} min")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "format": args.format, "results": results},
                                             indent=1) + "\n")


if __name__ == "__main__":
    main()
