"""Benchmark: a long backfill (`syi compute` of a generated demo tape), today's code next to
the code before `syi compute` streamed, on the same tape.

    .venv/bin/python bench/backfill.py                      # 30-day tape (720h), generated once and cached
    .venv/bin/python bench/backfill.py --duration 48h       # a quick look
    .venv/bin/python bench/backfill.py --tape my.jsonl.gz --no-baseline

The tape comes from `tools/make_demo_tape.py --duration D` and is cached under the temp
directory (`syi-bench/demo-D.jsonl.gz`; generating 720h takes about 10 minutes and 3 GB).
The baseline is the revision before `iter_run` appeared (override with `--baseline REV`),
exported with `git archive` next to the tape. Each side runs `python -m syi_cli.main compute`
in its own process with its own code on PYTHONPATH; the figures are that process's wall time
and peak RSS (`os.wait4`'s ru_maxrss). The two outputs must be byte-identical. The baseline
keeps the whole tape in memory (about 13 GB for 720h): it runs under an address-space limit
(`--baseline-limit-gb`) and is reported as out of memory rather than taking the machine down.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(tempfile.gettempdir()) / "syi-bench"
PYTHON = sys.executable


@dataclass
class Run:
    name: str
    seconds: float
    peak_rss_mb: float
    returncode: int
    output: Path
    summary: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def demo_tape(duration: str) -> Path:
    """The cached demo tape of `duration`, generated on first use."""
    tape = CACHE / f"demo-{duration}.jsonl.gz"
    if not tape.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = CACHE / f"partial-{duration}.jsonl.gz"  # renamed once complete
        print(f"generating {tape} (tools/make_demo_tape.py --duration {duration}) ...", flush=True)
        subprocess.run([PYTHON, str(REPO_ROOT / "tools" / "make_demo_tape.py"), "--duration", duration,
                        "--out", str(partial)], check=True)
        partial.rename(tape)
    return tape


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout.strip()


def default_baseline() -> str:
    """The revision before the first commit that added `iter_run` (the streaming compute)."""
    added = git("log", "--format=%H", "-S", "def iter_run", "--", "shared/syi_shared/methodology/engine.py").split()
    if not added:
        raise SystemExit("no commit adds iter_run: pass --baseline REV")
    return git("rev-parse", f"{added[-1]}^")


def export(rev: str) -> Path:
    """The code of `rev` (shared/ and cli/), exported once with git archive."""
    root = CACHE / f"code-{rev[:12]}"
    if not (root / "cli").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        archive = CACHE / f"code-{rev[:12]}.tar"
        subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), rev, "shared", "cli"], cwd=REPO_ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        archive.unlink()
    return root


def compute(name: str, code: Path, tape: Path, out: Path, limit_gb: float | None = None) -> Run:
    """`syi compute --tape` with `code`'s packages first on the path, in a child process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code / "shared"), str(code / "cli")])}

    def limit() -> None:  # in the child, before exec
        if limit_gb is not None:
            size = int(limit_gb * 1024**3)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    with open(out, "wb") as sink:
        began = time.monotonic()
        child = subprocess.Popen([PYTHON, "-m", "syi_cli.main", "compute", "--tape", str(tape),
                                  "--methodology", str(REPO_ROOT / "methodology.toml")], cwd=code,
                                 env=env, stdout=sink, stderr=subprocess.PIPE, preexec_fn=limit)
        assert child.stderr is not None
        stderr = child.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    lines = stderr.strip().splitlines()
    summary = lines[-1] if lines else ""
    if child.returncode != 0 and "MemoryError" in stderr:
        summary = f"out of memory under the {limit_gb:g} GB limit"
    return Run(name, seconds, usage.ru_maxrss / 1024, child.returncode, out, summary)


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="720h", help="demo tape length (default 720h = 30 days)")
    parser.add_argument("--tape", type=Path, help="compute this tape instead of a generated one")
    parser.add_argument("--baseline", help="git revision to compare with (default: the one before iter_run)")
    parser.add_argument("--no-baseline", action="store_true", help="time today's code only")
    parser.add_argument("--baseline-limit-gb", type=float, default=16.0, help="address-space limit of the baseline")
    args = parser.parse_args()

    tape = args.tape or demo_tape(args.duration)
    outputs = CACHE / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    print(f"tape {tape} ({tape.stat().st_size / 1e6:.0f} MB)", flush=True)

    runs = []
    print("today's code ...", flush=True)
    runs.append(compute("today", REPO_ROOT, tape, outputs / "today.jsonl"))
    if not args.no_baseline:
        rev = args.baseline or default_baseline()
        print(f"baseline {rev[:12]} ...", flush=True)
        runs.append(compute(f"baseline {rev[:12]}", export(rev), tape, outputs / "baseline.jsonl", args.baseline_limit_gb))

    print()
    print(f"{'code':<22} {'wall s':>8} {'peak RSS MB':>12}  summary")
    for run in runs:
        print(f"{run.name:<22} {run.seconds:>8.1f} {run.peak_rss_mb:>12.0f}  {run.summary}")
    today = runs[0]
    if not today.ok:
        print(f"today's code failed (exit {today.returncode})")
        return 1
    if len(runs) == 2:
        baseline = runs[1]
        if baseline.ok:
            same = digest(today.output) == digest(baseline.output)
            print(f"ratio today / baseline: wall {today.seconds / baseline.seconds:.2f}, "
                  f"peak RSS {today.peak_rss_mb / baseline.peak_rss_mb:.3f}")
            print(f"outputs {'byte-identical' if same else 'DIFFER'} ({today.output.stat().st_size / 1e6:.0f} MB)")
            if not same:
                return 1
        else:
            print(f"baseline did not finish (exit {baseline.returncode}): {baseline.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
