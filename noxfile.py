"""The test suite on every Python that pyproject.toml claims: ``make test-pythons`` (or ``nox -s tests-3.13``).

Each session installs exactly as ``make venv`` does (``-c constraints/py3.X.txt -e '.[all,dev]'``, checked against
the lock) and runs pytest with the project's settings (warnings are errors). Lint and types are
``make test``'s job: they read the source, not the interpreter (mypy checks for 3.10 already). The interpreters
come from PATH or pyenv (tools/lock.py's ``find_python``), so a machine with pyenv needs no ``pyenv global``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent / "tools"))
from lock import claimed_pythons, find_python

PYTHONS = claimed_pythons()  # the classifiers in pyproject.toml
THIS = f"{sys.version_info.major}.{sys.version_info.minor}"  # the Python `make test` runs on
OTHERS = [version for version in PYTHONS if version != THIS]

nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = True
nox.options.reuse_venv = "yes"  # the constraints pin every version: a kept venv is only re-synced, not rebuilt


def _interpreter_dirs() -> None:
    """Put each claimed Python's directory on PATH, so nox finds ``python3.X`` even behind pyenv shims."""
    found = []
    for version in PYTHONS:
        try:
            found.append(str(Path(find_python(version)).parent))
        except LookupError:
            pass  # nox then reports the interpreter missing, which fails the run
    os.environ["PATH"] = os.pathsep.join([*dict.fromkeys(found), os.environ.get("PATH", "")])


_interpreter_dirs()


@nox.session(python=OTHERS, venv_backend="venv")
def tests(session: nox.Session) -> None:
    """pytest on this Python, in a venv installed from its lock."""
    constraints = f"constraints/py{session.python}.txt"
    session.install("-qq", "--upgrade", "pip")
    session.install("-qq", "-c", constraints, "-e", ".[all,dev]")
    session.run("python", "tools/lock.py", "check", constraints)
    session.run("python", "-m", "pytest", "-q", *session.posargs)
