"""golden.paths (re-exported as pact.paths): one rule for every command's output paths, the
work trees, atomic publishing."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from golden import paths
from pact.cli import main
from pact.errors import UserError

ROOT = Path(__file__).resolve().parent.parent

# Each command with a placeholder OUT for its output path, and whether OUT is a folder. The
# inputs do not exist: the output is checked first, before any work.
COMMANDS = {
    "gen": (["gen", "--block", "mac_array", "--wbits", "4", "--abits", "4", "--rows", "2",
             "--cols", "2", "--out", "OUT"], "--out", True),
    "compile": (["compile", "NOFILE.pactimg", "--hw", "NOFILE", "--out", "OUT"], "--out", False),
    "export": (["export", "NOFILE", "--out", "OUT"], "--out", False),
    "golden": (["golden", "NOFILE.pactimg", "--json", "OUT"], "--json", False),
    "train": (["train", "--wbits", "4", "--abits", "4", "--epochs", "1", "--quiet", "--out",
               "OUT"], "--out", True),
    "sim": (["sim", "--block", "mac_array", "--sim", "icarus", "--wbits", "4", "--abits", "4",
             "--rows", "2", "--cols", "2", "--json", "OUT"], "--json", False),
    "flow": (["flow", "--wbits", "4", "--abits", "4", "--quiet", "--json", "OUT"], "--json",
             False),
    "report": (["report", "--quiet", "--out", "OUT"], "--out", True),
}


def _bad_paths(tmp_path, folder):
    """Output paths that cannot be written, with a word the message must contain."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "adir").mkdir()
    cases = [(afile / "out", "not a folder"), (tmp_path / "no" / "out", "does not exist")]
    cases.append((afile, "is a file") if folder else (tmp_path / "adir", "is a folder"))
    return cases


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_unwritable_output_first(tmp_path, capsys, monkeypatch,
                                                          command):
    argv, flag, folder = COMMANDS[command]
    monkeypatch.chdir(tmp_path)  # runs/ and sim_build/ would appear here
    for bad, words in _bad_paths(tmp_path, folder):
        before = _tree(tmp_path)
        rc = main([str(bad) if a == "OUT" else a for a in argv])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.count("\n") == 1 and flag in err and words in err, err
        assert _tree(tmp_path) == before, "something was left behind"


def test_a_folder_without_write_permission_is_refused(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(paths.tempfile, "TemporaryFile", refuse)
    with pytest.raises(UserError, match="cannot write in"):
        paths.check_output(tmp_path / "x.json", "--json")
    with pytest.raises(UserError, match="cannot write in"):
        paths.check_output(tmp_path, "--out", folder=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UserError, match="cannot write in"):
            paths.check_output(ro / "x.json", "--json")
    finally:
        ro.chmod(0o755)


def test_good_outputs_pass(tmp_path):
    assert paths.check_output(tmp_path / "x.json", "--json") == tmp_path / "x.json"
    assert paths.check_output(tmp_path, "--out", folder=True) == tmp_path
    assert paths.check_output(tmp_path / "new", "--out", folder=True) == tmp_path / "new"
    assert list(tmp_path.iterdir()) == []


def test_compile_refuses_a_file_as_hw(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["compile", "NOFILE", "--hw", str(afile), "--out", str(tmp_path / "p.hex")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--hw" in err and "not a folder" in err


@pytest.mark.parametrize("block", ["mac_array", "pact_unit"])
@pytest.mark.parametrize("command", ["gen", "sim"])
def test_block_sizes_past_the_limit_are_refused(tmp_path, capsys, block, command):
    out = tmp_path / ("hw" if command == "gen" else "s.json")
    argv = [command, "--block", block, "--wbits", "4", "--abits", "4", "--rows", "1000",
            "--cols", "8", *(["--sim", "icarus", "--json"] if command == "sim" else ["--out"]),
            str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rows must be in 1..64" in err
    assert not out.exists()


def test_the_limit_itself_is_allowed(tmp_path):
    from gen.generate import MAX_SIDE, validate

    validate("mac_array", {"wbits": 2, "abits": 2, "rows": MAX_SIDE, "cols": 1,
                           "max_reduction": 4, "max_shift": 0})


def test_write_file_is_atomic_and_0644(tmp_path):
    path = tmp_path / "f.txt"
    paths.write_file(path, "one")
    paths.write_file(path, b"two")
    assert path.read_text() == "two" and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_generated_files_are_0644(tmp_path):
    assert main(["gen", "--block", "mac_array", "--wbits", "4", "--abits", "4", "--rows", "2",
                 "--cols", "2", "--out", str(tmp_path / "hw")]) == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "hw").iterdir()}
    assert modes == {"pact_mac_array.v": 0o644, "manifest.json": 0o644}


def test_work_trees_follow_the_working_directory_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PACT_RUNS", raising=False)
    monkeypatch.delenv("PACT_SIM_BUILD", raising=False)
    assert paths.runs_root().resolve() == tmp_path / "runs"
    assert paths.sim_build_root() == tmp_path / "sim_build"
    monkeypatch.setenv("PACT_RUNS", str(tmp_path / "r"))
    monkeypatch.setenv("PACT_SIM_BUILD", str(tmp_path / "s"))
    assert paths.runs_root() == tmp_path / "r" and paths.sim_build_root() == tmp_path / "s"
    from cosim import flow, runner

    assert runner.build_folder("icarus", "x") == tmp_path / "s" / "icarus" / "x"
    assert flow.chip_dir({"wbits": 4, "abits": 4, "rows": 8, "cols": 8}).parent == (
        tmp_path / "s" / "chips")
    assert flow.FlowConfig(wbits=4, abits=4).runs == tmp_path / "r"


def test_stale_temporary_folders_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{paths.TEMP_PREFIX}{dead.pid}-chip.abc"
    live = tmp_path / f"{paths.TEMP_PREFIX}{os.getppid()}-chip.def"
    stale.mkdir()
    live.mkdir()
    tmp = paths.temp_folder(tmp_path / "chip")
    assert not stale.exists() and live.exists() and tmp.is_dir()
    (tmp / "f").write_text("x")
    paths.publish_folder(tmp, tmp_path / "chip")
    assert (tmp_path / "chip" / "f").read_text() == "x" and not tmp.exists()


def test_a_generation_killed_half_way_leaves_nothing_behind(tmp_path):
    """Issue 12: a kill during chip generation left a hidden temporary folder. The next
    generation in that folder removes it, and the chip it makes is complete."""
    params = dict(wbits=2, abits=2, rows=2, cols=2, max_channels=4, max_plane=16,
                  wbuf_depth=64)
    code = ("import sys; from cosim.flow import generate_chip; "
            f"generate_chip({params!r}, log=lambda m: None, root=sys.argv[1])")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(f"{paths.TEMP_PREFIX}*")):
        assert proc.poll() is None and time.monotonic() < deadline, "no temporary folder seen"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(f"{paths.TEMP_PREFIX}*"))  # what the kill left
    from cosim.flow import generate_chip

    out = generate_chip(params, log=lambda m: None, root=tmp_path)
    assert (out / "pact_chip.v").exists() and (out / "manifest.json").exists()
    assert not list(tmp_path.glob(f"{paths.TEMP_PREFIX}*"))
