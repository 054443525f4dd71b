"""The command line's own errors: one clear line naming what is wrong (never a traceback), and a
`capsvc --help` that lists every command with its one-line help."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from capsvc.cli import main

COMMANDS = ("serve", "check-config", "backup", "restore", "verify", "archive", "plan")


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse: usage errors and --help
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "capsvc.toml"
    path.write_text(f'[service]\ndata_dir = "{tmp_path / "data"}"\nshard_count = 4\n')
    return str(path)


def test_a_configuration_that_cannot_be_read_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "check-config", "--config", str(tmp_path))
    assert (code, err) == (2, f"capsvc: invalid configuration: cannot read {tmp_path}: "
                              "Is a directory\n")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    code, _, err = run(capsys, "check-config", "--config", str(binary))
    assert (code, err) == (2, f"capsvc: invalid configuration: {binary}: not UTF-8 text\n")


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "soon"])
def test_backup_refuses_a_timeout_that_is_not_a_positive_number(capsys, config, tmp_path,
                                                                 timeout):
    target = tmp_path / "backup"
    code, _, err = run(capsys, "backup", str(target), "--config", config, "--timeout-s", timeout)
    assert code == 2
    assert last_line(err) == ("capsvc backup: error: argument --timeout-s: expected a positive "
                              f"number of seconds, got '{timeout}'")
    assert not target.exists()


def test_archive_names_the_option_and_the_format_of_a_bad_date(capsys, config):
    bad = f"{dt.date.today().year}-13-01"
    code, _, err = run(capsys, "archive", "--before", bad, "--config", config)
    assert code == 2
    assert last_line(err) == ("capsvc archive: error: argument --before: expected a date "
                              f"YYYY-MM-DD, got '{bad}'")


def test_help_lists_every_command_on_one_line_and_nothing_internal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "SUPPRESS" not in out and "child" not in out
    listed = re.findall(r"^    (\S+) +(\S.*)$", out, re.MULTILINE)
    assert [name for name, _ in listed] == list(COMMANDS)
    assert not re.search(r"^ {5,}\S", out, re.MULTILINE), out  # no help wrapped to a 2nd line
