"""cli_common.run: exit codes, and the garbage collector switched off only while the CLI imports."""

import argparse
import gc

import pytest

from imaging_db.cli import cli_common
from imaging_db.errors import InputError


def _args(verbose=False):
    return argparse.Namespace(verbose=verbose)


@pytest.fixture(autouse=True)
def gc_back_on():
    yield
    gc.enable()


def test_collector_is_off_until_imports_are_done():
    seen = []

    def main(args):
        seen.append(gc.isenabled())
        cli_common.imports_done()
        seen.append(gc.isenabled())
        return cli_common.EXIT_OK

    assert cli_common.run(main, _args(), "prog") == cli_common.EXIT_OK
    assert seen == [False, True]
    assert gc.isenabled()


@pytest.mark.parametrize("error, code", [(InputError("bad row"), cli_common.EXIT_FAILED),
                                         (RuntimeError("boom"), cli_common.EXIT_UNEXPECTED),
                                         (KeyboardInterrupt(), cli_common.EXIT_INTERRUPTED)])
def test_collector_is_back_on_after_an_early_error(error, code, capsys):
    def main(args):
        raise error

    assert cli_common.run(main, _args(), "prog") == code
    assert gc.isenabled()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("4", "4")])
def test_openblas_threads_limited_before_numpy_loads(preset, expected):
    """The CLIs keep OpenBLAS to one thread (its idle threads spin), unless the user chose otherwise."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = ("import sys, os, imaging_db.cli.data_uploader; assert 'numpy' not in sys.modules; "
            "print(os.environ['OPENBLAS_NUM_THREADS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == expected
