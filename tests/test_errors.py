"""golden.errors: the base user error at the bottom layer; golden never imports pact."""

import re
import subprocess
import sys
from pathlib import Path

import golden
from golden.errors import UserError
from pact import errors as pact_errors

GOLDEN = Path(golden.__file__).parent
_PACT_IMPORT = re.compile(r"^\s*(from\s+pact[\s.]|import\s+pact\b)", re.MULTILINE)


def test_pact_re_exports_the_same_class():
    assert pact_errors.UserError is UserError


def test_the_import_pattern_sees_a_pact_import():
    """The source check below could not fail if the pattern matched nothing."""
    assert _PACT_IMPORT.search("x = 1\n    from pact.paths import write_file\n")
    assert _PACT_IMPORT.search("import pact\n")
    assert not _PACT_IMPORT.search("from .paths import write_file  # was pact.paths\n")


def test_golden_sources_never_import_pact():
    offenders = [p.name for p in sorted(GOLDEN.glob("*.py"))
                 if _PACT_IMPORT.search(p.read_text())]
    assert offenders == []


def test_importing_golden_image_and_paths_loads_no_pact():
    code = ("import sys, golden.image, golden.paths, golden.shapes\n"
            "print('pact' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
