"""Where output goes: one rule for every command's output paths, the two work trees, and how
files are published.

- **Output paths** (``check_output``): every command checks each path it will write before
  doing any work. The parent must be an existing folder that we can create files in; a file
  output must not be a folder, a folder output must not be a file. A bad path is a one-line
  ``UserError`` (exit 2) and nothing is created.
- **Work trees**: training runs go to ``runs/`` and builds to ``sim_build/``, both under the
  working directory, or wherever ``$PACT_RUNS`` and ``$PACT_SIM_BUILD`` point.
- **Publishing** (``write_file``, ``publish_folder``): a file or folder is made under a
  temporary name beside its destination and renamed into place, so a reader (another process)
  sees the old version or the new one, never half of one, and a crash leaves no partial
  output. Files get mode 0644 (``mkstemp`` alone gives 0600).

The module sits in ``golden`` (the bottom layer, which writes runs and images) so that
``golden`` never imports ``pact``; ``pact.paths`` re-exports it.
"""

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError

__all__ = ["FILE_MODE", "runs_root", "sim_build_root", "check_output", "write_file",
           "publish_folder", "temp_folder", "clean_stale_temps", "locked"]

FILE_MODE = 0o644


def runs_root() -> Path:
    """``$PACT_RUNS`` or ``runs/`` under the working directory (training runs)."""
    return Path(os.environ.get("PACT_RUNS") or "runs")


def sim_build_root() -> Path:
    """``$PACT_SIM_BUILD`` or ``sim_build/`` under the working directory, absolute (builds,
    generated chips, work folders)."""
    return Path(os.environ.get("PACT_SIM_BUILD") or "sim_build").resolve()


def _writable_folder(folder: str | os.PathLike[str]) -> bool:
    """True when a file can be created in ``folder`` (tried, not guessed from mode bits: root
    ignores them, a read-only mount does not)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output(path: str | os.PathLike[str], flag: str, *, folder: bool = False) -> Path:
    """Refuse an output path that cannot be written, before any work; returns it as a ``Path``.

    ``flag`` names the option in the message (e.g. ``"--json"``). ``folder=True`` for an output
    folder (created by the command; an existing one is written into).
    """
    path = Path(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise UserError(f"{flag} {path} is a file; give a folder")
    elif path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() or _under_a_file(parent) else "does not exist"
        raise UserError(f"{flag} {path}: {parent} {what}; give a path in an existing folder")
    target = path if folder and path.is_dir() else parent
    if not _writable_folder(target):
        raise UserError(f"{flag} {path}: cannot write in {target}; give a writable folder")
    return path


def _under_a_file(path: Path) -> bool:
    return any(p.exists() and not p.is_dir() for p in path.parents)


def write_file(path: str | os.PathLike[str], data: str | bytes, *, mode: int = FILE_MODE) -> None:
    """Write ``data`` (``str`` or ``bytes``) to ``path`` atomically, with ``mode``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Prefix of the temporary folders ``temp_folder`` makes (``clean_stale_temps`` finds them).
TEMP_PREFIX = ".tmp-"


def temp_folder(dest: str | os.PathLike[str]) -> Path:
    """A new, empty folder beside ``dest`` to build it in (then ``publish_folder``). Its name
    carries this process's id, so a later run can tell a leftover of a killed one."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(dest.parent)
    return Path(tempfile.mkdtemp(dir=dest.parent,
                                 prefix=f"{TEMP_PREFIX}{os.getpid()}-{dest.name}."))


def publish_folder(tmp: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Move the finished folder ``tmp`` to ``dest`` (replacing an old ``dest``), by rename."""
    tmp, dest = Path(tmp), Path(dest)
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700
    if dest.exists():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f"{TEMP_PREFIX}{os.getpid()}-old."))
        os.replace(dest, old / "x")
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike[str]) -> None:
    """Remove the temporary folders in ``folder`` left by processes that no longer run (a kill
    during generation or a build)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.glob(f"{TEMP_PREFIX}*"):
        pid = p.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created, with its folder): processes
    that would make the same thing (a build, a chip, a training run) take turns. The lock goes
    with the process, so a killed holder never blocks the others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
