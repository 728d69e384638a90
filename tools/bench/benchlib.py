"""Shared helpers for Kindling's benchmarks: build the release binary, make workspaces, time commands."""
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def sh(*cmd, cwd=None, env=None, capture=True, check=True):
    merged = dict(os.environ)
    merged.update(env or {})
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=merged, check=False, text=True,
        stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(map(str, cmd))}\n{result.stdout}\n{result.stderr}")
    return result


def setup():
    """Installs packages (with the benchmark extras) and builds the release binary; returns its path."""
    sh(ROOT / "tools/setup", env={"KINDLING_BENCH_PACKAGES": "1"}, capture=False)
    sh("swift", "build", "-c", "release", "--product", "kindling", cwd=ROOT, capture=False)
    bin_dir = sh("swift", "build", "-c", "release", "--show-bin-path", cwd=ROOT).stdout.strip()
    return pathlib.Path(bin_dir) / "kindling"


def workdir(label):
    base = os.environ.get("KINDLING_BENCH_DIR") or tempfile.gettempdir()
    return pathlib.Path(tempfile.mkdtemp(prefix=f"kindling-bench-{label}-", dir=base))


def timed(*cmd, **kwargs):
    start = time.perf_counter()
    sh(*cmd, **kwargs)
    return time.perf_counter() - start


def tree_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def median(values):
    return statistics.median(values)


def fresh(path):
    path = pathlib.Path(path)
    if path.exists():
        shutil.rmtree(path)
    return path


def make_workspace(directory, modules, functions, git=True, big_members=1):
    args = [ROOT / "tools/workspace/generate.py", directory, "--modules", modules, "--functions", functions,
            "--big-members", big_members]
    if git:
        args.append("--git")
    sh("python3", *args)
    return pathlib.Path(directory)


def kindling_json(binary, *args):
    return json.loads(sh(binary, *args, "--json").stdout)


def table(rows, headers):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
