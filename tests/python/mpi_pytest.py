"""Runs pytest on every MPI rank (all ranks collect the same tests in the same order, so their
collective calls match). pytest's "no tests ran" (exit 5, e.g. everything skipped or
deselected) is not a failure here; any other non-zero exit is."""
import os
import sys

import pytest

rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))
args = ["-q", "--color=no", "-p", "no:cacheprovider"] + sys.argv[1:]
if rank != 0:
    args += ["--no-header", "-rN"]
rc = pytest.main(args)
sys.exit(0 if rc == pytest.ExitCode.NO_TESTS_COLLECTED else int(rc))
