"""Write, or check, the versions the test and dev environments install (``constraints/py3.X.txt``).

``python tools/lock.py write [3.10 ...]``: for each Python (by default every one pyproject.toml's classifiers
claim, found by :func:`find_python`), a fresh temporary venv, ``pip install -e '.[all,dev]'`` with no constraints
(the newest versions pyproject.toml allows that day), then ``pip freeze --exclude-editable`` into
``constraints/py3.X.txt``. One file per Python, because the newest release a Python can install differs (numpy
2.5 needs 3.12, say). ``make lock`` runs it.

``python tools/lock.py check CONSTRAINTS``, run by a venv's own python, fails and names the packages when what
the venv has installed differs from the file (a dependency added to pyproject.toml without ``make lock``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ".[all,dev]"
HEADER = """\
# The test and dev environment's versions on Python {version} ({system}). Installed as
#   pip install -c {name} -e '{extras}'
# by `make venv` and noxfile.py. Do not edit: `make lock` rewrites it (tools/lock.py: a fresh venv,
# `pip install -e '{extras}'` with no constraints, then `pip freeze --exclude-editable`).
"""
DESCRIBE = "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.system(), platform.machine())"


def claimed_pythons() -> list[str]:
    """The Python versions pyproject.toml's classifiers claim ("3.10", ...): the ones we pin and test."""
    text = (ROOT / "pyproject.toml").read_text()
    return re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)


def find_python(version: str) -> str:
    """The interpreter for ``version`` ("3.12"): ``python3.12`` on PATH if it runs, else pyenv's newest 3.12.x."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:  # not a bare pyenv shim
        return found
    root = Path.home() / ".pyenv"
    if shutil.which("pyenv"):
        root = Path(subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip())
    candidates = sorted(
        root.glob(f"versions/{version}.*/bin/python{version}"),
        key=lambda path: [int(n) for n in re.findall(r"\d+", path.parent.parent.name)],
    )
    if not candidates:
        raise LookupError(f"no Python {version}: no python{version} on PATH, none in {root}/versions")
    return str(candidates[-1])


def write(python: str) -> Path:
    """Resolve the newest allowed versions for ``python`` in a throwaway venv and pin them."""
    with tempfile.TemporaryDirectory(prefix="mmembed-lock-") as tmp:
        subprocess.run([python, "-m", "venv", tmp], check=True)
        venv_python = str(Path(tmp) / "bin" / "python")
        pip = [venv_python, "-m", "pip"]
        subprocess.run([*pip, "install", "-qq", "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "install", "-qq", "-e", EXTRAS], check=True, cwd=ROOT)
        frozen = subprocess.run([*pip, "freeze", "--exclude-editable"], check=True, capture_output=True, text=True)
        described = subprocess.run([venv_python, "-c", DESCRIBE], check=True, capture_output=True, text=True)
    version, system = described.stdout.strip().split(" ", 1)
    path = ROOT / "constraints" / f"py{version}.txt"
    path.parent.mkdir(exist_ok=True)
    pins = sorted((line for line in frozen.stdout.splitlines() if line and not line.startswith("#")), key=str.lower)
    header = HEADER.format(version=version, system=system, name=path.relative_to(ROOT), extras=EXTRAS)
    path.write_text(header + "\n".join(pins) + "\n")
    return path


def read_pins(text: str) -> dict[str, str]:
    """``{normalised name: version}`` from ``name==version`` lines (comments and blank lines ignored)."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def check(constraints: Path) -> list[str]:
    """Where this interpreter's installed packages disagree with ``constraints``, one line each."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True, capture_output=True, text=True
    ).stdout
    installed, pinned = read_pins(frozen), read_pins(constraints.read_text())
    return [
        f"{name}=={version} is installed, {constraints.name} pins {pinned.get(name, 'nothing')}"
        for name, version in sorted(installed.items())
        if pinned.get(name) != version
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["write"]:
        for version in argv[1:] or claimed_pythons():
            python = find_python(version)
            print(f"locked {python} -> {write(python).relative_to(ROOT)}", flush=True)
        return 0
    if len(argv) == 2 and argv[0] == "check":
        problems = check(Path(argv[1]))
        for problem in problems:
            print(f"lock: {problem}", file=sys.stderr)
        if problems:
            print(f"lock: {argv[1]} differs from this venv: `make lock` re-pins", file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
