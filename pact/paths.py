"""Where output goes: re-exported from ``golden.paths`` (the bottom layer, so ``golden`` never
imports ``pact``); the same functions, for the CLI, the generator and the benches."""

from golden.paths import (
    FILE_MODE,
    TEMP_PREFIX,
    check_output,
    clean_stale_temps,
    locked,
    publish_folder,
    runs_root,
    sim_build_root,
    temp_folder,
    write_file,
)

__all__ = ["FILE_MODE", "TEMP_PREFIX", "runs_root", "sim_build_root", "check_output",
           "write_file", "publish_folder", "temp_folder", "clean_stale_temps", "locked"]
