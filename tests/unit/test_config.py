"""`capsvc check-config` refuses values that would only fail later (a bind address that is
no address, an empty data directory, a ZooKeeper list that is no list, worker ports on the
public port): one line naming the dotted key, exit 2. The values around them still pass."""

from __future__ import annotations

import os

import pytest

from capsvc.cli import main as capsvc_main
from capsvc.config import ConfigError, load_config

CPUS = os.cpu_count() or 1
SECRET = 'secret = "0123456789abcdef0123"\n'


def check_config(tmp_path, capsys, text: str) -> tuple[int, str]:
    path = tmp_path / "capsvc.toml"
    path.write_text(text)
    code = capsvc_main(["check-config", "--config", str(path)])
    return code, capsys.readouterr().err.strip()


REFUSED = {
    "a host with spaces": ('[service]\nhost = "not a host!"\n', "service.host"),
    "an empty host": ('[service]\nhost = ""\n', "service.host"),
    "a mistyped IPv4 address": ('[service]\nhost = "10.0.0.300"\n', "service.host"),
    "a worker host with spaces": ('[service]\nworker_host = "a b"\n', "service.worker_host"),
    "a bad advertise host": ('[cluster]\nadvertise_host = "x/y"\n', "cluster.advertise_host"),
    "an empty data_dir": ('[service]\ndata_dir = ""\n', "service.data_dir"),
    "a blank data_dir": ('[service]\ndata_dir = "  "\n', "service.data_dir"),
    "zookeeper colons": ('[cluster]\nzookeeper = "::::"\n' + SECRET, "cluster.zookeeper"),
    "zookeeper empty entry": ('[cluster]\nzookeeper = "zk1:2181,"\n' + SECRET,
                              "cluster.zookeeper"),
    "zookeeper bad port": ('[cluster]\nzookeeper = "zk1:99999"\n' + SECRET, "cluster.zookeeper"),
    "zookeeper bad host": ('[cluster]\nzookeeper = "zk 1:2181"\n' + SECRET, "cluster.zookeeper"),
    "worker ports on the public port": (
        "[service]\nport = 9100\nworker_port_base = 9100\nworkers = 2\n",
        "service.worker_port_base"),
    "the last worker port on the public port": (
        "[service]\nport = 9101\nworker_port_base = 9100\nworkers = 2\n",
        "service.worker_port_base"),
    "one worker per CPU reaching the public port": (
        f"[service]\nport = {9100 + CPUS - 1}\nworker_port_base = 9100\nworkers = 0\n",
        "service.worker_port_base"),
}

ACCEPTED = {
    "an IPv4 wildcard": '[service]\nhost = "0.0.0.0"\n',
    "an IPv6 address": '[service]\nhost = "::1"\nworker_host = "::"\n',
    "a host name": '[service]\nhost = "localhost"\nworker_host = "vm1.example.internal"\n',
    "a data_dir": '[service]\ndata_dir = "./somewhere else"\n',
    "a ZooKeeper ensemble": (
        '[service]\nworker_port_base = 9100\n[cluster]\n'
        'zookeeper = "zk1:2181,10.0.0.2:2181,[::1]:2181"\n' + SECRET),
    "a ZooKeeper with a chroot": (
        '[service]\nworker_port_base = 9100\n[cluster]\nzookeeper = "zk1:2181/apps/capsvc"\n'
        + SECRET),
    "worker ports just past the public port": (
        "[service]\nport = 9099\nworker_port_base = 9100\nworkers = 2\n"),
    "worker ports just before the public port": (
        "[service]\nport = 9102\nworker_port_base = 9100\nworkers = 2\n"),
    "one worker per CPU just before the public port": (
        f"[service]\nport = {9100 + CPUS}\nworker_port_base = 9100\nworkers = 0\n"),
    "a public port chosen by the kernel": "[service]\nport = 0\nworker_port_base = 9100\n",
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_check_config_refuses_with_the_dotted_key(tmp_path, capsys, case):
    text, key = REFUSED[case]
    code, error = check_config(tmp_path, capsys, text)
    assert code == 2, error
    assert error.startswith(f"capsvc: invalid configuration: {key}: "), error
    assert "\n" not in error


@pytest.mark.parametrize("case", ACCEPTED, ids=list(ACCEPTED))
def test_check_config_accepts_the_values_around_them(tmp_path, capsys, case):
    code, error = check_config(tmp_path, capsys, ACCEPTED[case])
    assert (code, error) == (0, "")


@pytest.mark.parametrize("override, key", [
    ({"host": "not a host!"}, "service.host"),
    ({"data_dir": ""}, "service.data_dir"),
    ({"port": 9100}, "service.worker_port_base"),
])
def test_command_line_overrides_are_checked_the_same(tmp_path, override, key):
    path = tmp_path / "capsvc.toml"
    path.write_text("[service]\nworker_port_base = 9100\nworkers = 1\n")
    with pytest.raises(ConfigError, match=f"^{key}: "):
        load_config(path).with_overrides(**override)


def test_a_renamed_key_is_still_read_under_its_old_name(tmp_path):
    """`limits.header_timeout_ms` bounds the body too, so it is now
    `limits.request_read_timeout_ms`; a config file with the old name keeps working, and one
    with both names is refused rather than silently picking one."""
    old = tmp_path / "old.toml"
    old.write_text("[limits]\nheader_timeout_ms = 1234\n")
    assert load_config(old).limits.request_read_timeout_ms == 1234
    both = tmp_path / "both.toml"
    both.write_text("[limits]\nheader_timeout_ms = 1234\nrequest_read_timeout_ms = 99\n")
    with pytest.raises(ConfigError, match="limits.header_timeout_ms: give only"):
        load_config(both)
    low = tmp_path / "low.toml"
    low.write_text("[limits]\nheader_timeout_ms = 5\n")
    with pytest.raises(ConfigError, match="limits.request_read_timeout_ms"):
        load_config(low)
