"""PEX size and cold start of each app, measured on the packaged binaries.

    ./pants package apps::
    ./pants run bench/pex_startup.py -- --runs 5

For every `dist/apps.<name>/<name>.pex`: its size, the wall time of `<pex> --help` with a cold
PEX_ROOT (first run: the PEX unpacks itself) and warm (later runs), and for email-service the time
from process start to its first consumed task (an example task enqueued in a fresh queue on the
local RabbitMQ, delivered to the outbox). Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.testing import delete_worker_queues

#: Long enough for a cold start on a busy 2-core machine, short enough to notice a hang.
START_TIMEOUT_S = 120.0


def _pex_paths(dist: Path) -> dict[str, Path]:
    return {path.stem: path.resolve() for path in sorted(dist.glob("apps.*/*.pex"))}


def _timed_help(pex: Path, python: str, pex_root: Path) -> float:
    env = {"PATH": os.environ.get("PATH", ""), "PEX_ROOT": str(pex_root)}
    started = time.perf_counter()
    subprocess.run([python, str(pex), "--help"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _help_times(pex: Path, python: str, runs: int) -> tuple[float, float]:
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as root:
            cold.append(_timed_help(pex, python, Path(root)))
            warm.append(_timed_help(pex, python, Path(root)))
    return statistics.median(cold), statistics.median(warm)


def _first_task_time(pex: Path, python: str, example: Path, amqp_url: str) -> float:
    """Seconds from `<pex> run` starting to the first task's e-mail landing in the outbox."""
    queue = f"bench-startup-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as work:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PEX_ROOT": str(Path(work) / "pex_root"),
            "AMQP_URL": amqp_url,
            "WORKER_QUEUE": queue,
            "EMAIL_OUTBOX_DIR": str(Path(work) / "outbox"),
            "LOG_LEVEL": "WARNING",
        }
        # Warm the PEX cache first: this measures start-up, not first-run unpacking.
        subprocess.run([python, str(pex), "--help"], env=env, check=True, capture_output=True)
        subprocess.run(
            [python, str(pex), "enqueue", str(example)], env=env, check=True, capture_output=True
        )
        started = time.perf_counter()
        worker = subprocess.Popen([python, str(pex), "run"], env=env, cwd=work)
        try:
            outbox = Path(env["EMAIL_OUTBOX_DIR"])
            while not any(outbox.glob("*.eml")):
                if time.perf_counter() - started > START_TIMEOUT_S:
                    raise TimeoutError(f"no task consumed within {START_TIMEOUT_S:.0f} s")
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited with {worker.returncode}")
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            delete_worker_queues(
                load_settings(WorkerSettings, amqp_url=amqp_url, worker_queue=queue)
            )
    return elapsed


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=Path("dist"), help="where `package` wrote")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument("--python", default=shutil.which("python3.11") or sys.executable)
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    args = parser.parse_args()

    pexes = _pex_paths(args.dist)
    if not pexes:
        parser.error(f"no PEX files under {args.dist}/apps.*/: run `./pants package apps::` first")
    figures: dict[str, dict[str, float]] = {}
    for name, pex in pexes.items():
        cold, warm = _help_times(pex, args.python, args.runs)
        figures[name] = {
            "size_mb": round(pex.stat().st_size / 1_000_000, 1),
            "help_cold_s": round(cold, 2),
            "help_warm_s": round(warm, 2),
        }
    if "email-service" in pexes:
        example = Path("apps/email-service/examples/welcome.json").resolve()
        times = [
            _first_task_time(pexes["email-service"], args.python, example, args.amqp_url)
            for _ in range(args.runs)
        ]
        figures["email-service"]["first_task_s"] = round(statistics.median(times), 2)

    print(f"{'app':<16}{'size MB':>9}{'--help cold s':>15}{'--help warm s':>15}{'1st task s':>12}")
    for name, row in figures.items():
        first = f"{row['first_task_s']:.2f}" if "first_task_s" in row else "-"
        print(
            f"{name:<16}{row['size_mb']:>9.1f}{row['help_cold_s']:>15.2f}"
            f"{row['help_warm_s']:>15.2f}{first:>12}"
        )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
