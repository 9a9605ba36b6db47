"""PEX size and cold start of each app, measured on the packaged binaries.

    ./pants package apps::
    ./pants run bench/pex_startup.py -- --runs 5
    ./pants run bench/pex_startup.py -- --runs 3 --compare /tmp/other-dist   # interleaved

For every `dist/apps.<name>/<name>.pex`: its size, its execution mode (`venv` or `zipapp`, from
its PEX-INFO), the wall time of `<pex> --help` with a cold PEX_ROOT (first run: the PEX unpacks
itself, or installs itself into a venv) and warm (later runs), the time to merely extract the
PEX's files for this machine (its sources and this CPU's wheels) into a fresh folder (the floor
of a cold start, which writes at least those), and for email-service the time from process
start to its first consumed task (an example task enqueued in a fresh queue on the local
RabbitMQ, delivered to the outbox). With `--compare DIR`, the PEX files of another `dist/` (say
a build with the other execution mode) are measured in the same run, alternating with this
one's run by run. The interpreter is resolved to its real executable (a pyenv shim is a shell
script that would add its own start-up to every figure) and printed.
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.testing import delete_worker_queues

#: Long enough for a cold start on a busy 2-core machine, short enough to notice a hang.
START_TIMEOUT_S = 120.0


def _pex_paths(dist: Path) -> dict[str, Path]:
    return {path.stem: path.resolve() for path in sorted(dist.glob("apps.*/*.pex"))}


def _real_python(candidate: str) -> str:
    """The interpreter `candidate` really runs (a pyenv shim or a symlink resolved)."""
    found = shutil.which(candidate) or candidate
    completed = subprocess.run(
        [found, "-c", "import sys; print(sys.executable)"],
        check=True,
        capture_output=True,
        text=True,
    )
    return completed.stdout.strip()


def _execution_mode(pex: Path) -> str:
    with zipfile.ZipFile(pex) as archive:
        info = json.loads(archive.read("PEX-INFO"))
    return "venv" if info.get("venv") else "zipapp"


def _for_this_machine(entry: str) -> bool:
    """False for the files of a wheel built for another CPU (the PEX carries x86_64 and aarch64)."""
    if not entry.startswith(".deps/"):
        return True
    wheel = entry.split("/")[1]
    others = {"x86_64", "aarch64"} - {platform.machine()}
    return not any(arch in wheel for arch in others)


def _unzip_time(pex: Path) -> tuple[float, float]:
    """Seconds to extract the PEX's files for this machine into a fresh folder, and their MB.

    What a cold start cannot avoid: it writes at least these files under PEX_ROOT.
    """
    with tempfile.TemporaryDirectory() as target, zipfile.ZipFile(pex) as archive:
        members = [info for info in archive.infolist() if _for_this_machine(info.filename)]
        started = time.perf_counter()
        for member in members:
            archive.extract(member, target)
        elapsed = time.perf_counter() - started
    return elapsed, sum(member.file_size for member in members) / 1_000_000


def _timed_help(pex: Path, python: str, pex_root: Path) -> float:
    env = {"PATH": os.environ.get("PATH", ""), "PEX_ROOT": str(pex_root)}
    started = time.perf_counter()
    subprocess.run([python, str(pex), "--help"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _help_times(pex: Path, python: str) -> tuple[float, float]:
    """One cold and one warm `--help`, in a fresh PEX_ROOT."""
    with tempfile.TemporaryDirectory() as root:
        return _timed_help(pex, python, Path(root)), _timed_help(pex, python, Path(root))


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


def _measure(
    variants: dict[str, dict[str, Path]], python: str, runs: int, amqp_url: str
) -> dict[str, dict[str, dict[str, object]]]:
    """Medians per variant and app; the variants alternate within each run."""
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        variant: {name: {} for name in pexes} for variant, pexes in variants.items()
    }
    example = Path("apps/email-service/examples/welcome.json").resolve()
    for _ in range(runs):
        for variant, pexes in variants.items():
            for name, pex in pexes.items():
                cold, warm = _help_times(pex, python)
                row = samples[variant][name]
                row.setdefault("help_cold_s", []).append(cold)
                row.setdefault("help_warm_s", []).append(warm)
                unzip_s, unzipped_mb = _unzip_time(pex)
                row.setdefault("unzip_s", []).append(unzip_s)
                row.setdefault("unzipped_mb", []).append(unzipped_mb)
                if name == "email-service":
                    row.setdefault("first_task_s", []).append(
                        _first_task_time(pex, python, example, amqp_url)
                    )
    figures: dict[str, dict[str, dict[str, object]]] = {}
    for variant, pexes in variants.items():
        figures[variant] = {}
        for name, pex in pexes.items():
            figures[variant][name] = {
                "mode": _execution_mode(pex),
                "size_mb": round(pex.stat().st_size / 1_000_000, 1),
                **{
                    key: round(statistics.median(values), 2)
                    for key, values in samples[variant][name].items()
                },
            }
    return figures


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=Path("dist"), help="where `package` wrote")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="OTHER_DIST",
        help="another dist/ (e.g. a zipapp build) measured in the same run, interleaved",
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument(
        "--python",
        default="python3.11" if shutil.which("python3.11") else sys.executable,
        help="CPython 3.11 to run the PEX files with (resolved to its real executable)",
    )
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    args = parser.parse_args()

    variants = {"dist": _pex_paths(args.dist)}
    if not variants["dist"]:
        parser.error(f"no PEX files under {args.dist}/apps.*/: run `./pants package apps::` first")
    if args.compare is not None:
        variants["compare"] = _pex_paths(args.compare)
        if not variants["compare"]:
            parser.error(f"no PEX files under {args.compare}/apps.*/")
    python = _real_python(args.python)
    print(f"python: {python} (from {args.python})")
    figures = _measure(variants, python, args.runs, args.amqp_url)

    print(
        f"{'variant':<9}{'app':<16}{'mode':<8}{'size MB':>9}{'unzipped MB':>13}{'unzip s':>9}"
        f"{'--help cold s':>15}{'--help warm s':>15}{'1st task s':>12}"
    )
    for name in variants["dist"]:
        for variant in variants:
            row = figures[variant].get(name)
            if row is None:
                continue
            first = f"{row['first_task_s']:.2f}" if "first_task_s" in row else "-"
            print(
                f"{variant:<9}{name:<16}{row['mode']:<8}{row['size_mb']:>9.1f}"
                f"{row['unzipped_mb']:>13.1f}{row['unzip_s']:>9.2f}{row['help_cold_s']:>15.2f}"
                f"{row['help_warm_s']:>15.2f}{first:>12}"
            )
    print(json.dumps({"python": python, **figures}, sort_keys=True))


if __name__ == "__main__":
    main()
