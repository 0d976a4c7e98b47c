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


def _parser():
    parser = argparse.ArgumentParser(prog="prog")
    cli_common.add_common_arguments(parser)
    return parser


def test_collector_is_off_until_imports_are_done():
    """The library loads with the cyclic collector paused; the command runs with it on and the modules frozen."""
    seen = []

    def build_parser():
        seen.append(("parse", gc.isenabled()))
        return _parser()

    def body(args):
        seen.append(("body", gc.isenabled(), gc.get_freeze_count() > 0))
        return cli_common.EXIT_OK

    main = cli_common.console_script("prog", build_parser, body, imports=["json"])
    try:
        assert main([]) == cli_common.EXIT_OK
    finally:
        gc.unfreeze()
    assert seen == [("parse", False), ("body", True, True)]
    assert gc.isenabled()


@pytest.mark.parametrize("error, code", [(InputError("bad row"), cli_common.EXIT_FAILED),
                                         (RuntimeError("boom"), cli_common.EXIT_UNEXPECTED),
                                         (KeyboardInterrupt(), cli_common.EXIT_INTERRUPTED)])
def test_collector_is_back_on_after_an_early_error(error, code, capsys):
    def body(args):
        raise error

    assert cli_common.console_script("prog", _parser, body, imports=["no_such_module_here"] if code == 2 else [])([]) \
        == code
    assert gc.isenabled()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_collector_is_back_on_after_bad_arguments(capsys):
    main = cli_common.console_script("prog", _parser, lambda args: 0)
    with pytest.raises(SystemExit):
        main(["--no-such-flag"])
    assert gc.isenabled()
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_every_command_enters_through_console_script():
    """A command that built its own main would miss the process set-up: each main is console_script's."""
    from imaging_db.cli import data_downloader, data_uploader, data_verify, imaging_db_migrate

    for module in (data_uploader, data_downloader, data_verify, imaging_db_migrate):
        assert module.main.__qualname__ == "console_script.<locals>.main", module.__name__


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("4", "4")])
def test_openblas_threads_limited_before_numpy_loads(preset, expected):
    """The CLIs keep OpenBLAS to one thread (its idle threads spin), unless the user chose otherwise."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = ("import sys, os\nfrom imaging_db.cli import data_uploader\nassert 'numpy' not in sys.modules\n"
            "assert data_uploader.main(['--csv', 'no.csv', '--config', 'no.json']) == 1\n"
            "assert 'numpy' in sys.modules\nprint(os.environ['OPENBLAS_NUM_THREADS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == expected
