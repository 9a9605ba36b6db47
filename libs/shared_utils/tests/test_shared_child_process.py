import os
import subprocess
import sys

from shared_utils.child_process import inherited_pythonpath


def test_every_entry_is_absolute():
    assert all(os.path.isabs(entry) for entry in inherited_pythonpath().split(os.pathsep))


def test_child_started_in_another_directory_imports_the_parents_modules(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", "import shared_utils.child_process"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": inherited_pythonpath()},
        capture_output=True,
        text=True,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
