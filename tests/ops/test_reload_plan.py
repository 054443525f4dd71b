"""What a SIGHUP reload does with a changed configuration file, key by key: a table of
(change, keys that need a restart, router restarted, what children start with from now on)."""

from __future__ import annotations

import dataclasses

import pytest

from capsvc.config import Config
from capsvc.supervisor.lifecycle import local_url, plan_reload

RUNNING = Config()


def changed(section: str, **values) -> Config:
    return dataclasses.replace(
        RUNNING, **{section: dataclasses.replace(getattr(RUNNING, section), **values)}
    )


@pytest.mark.parametrize(
    ("loaded", "need_restart", "router_restarted"),
    [
        pytest.param(RUNNING, (), False, id="nothing changed"),
        pytest.param(changed("auth", admin_tokens=("x" * 20,)), (), True, id="admin tokens"),
        pytest.param(changed("logging", level="DEBUG"), (), True, id="log level"),
        pytest.param(changed("limits", units_max=7), (), True, id="limits"),
        pytest.param(changed("read_model", feed_wait_ms=100), (), True, id="read model"),
        pytest.param(changed("storage", snapshot_every_events=50), (), False,
                     id="storage: workers take it at their next start"),
        pytest.param(changed("supervisor", drain_timeout_ms=20_000), (), False,
                     id="supervisor: applies at once"),
        pytest.param(changed("service", port=9999), ("service.port",), False,
                     id="port needs a restart"),
        pytest.param(changed("service", shard_count=128), ("service.shard_count",), False,
                     id="shard count needs a restart"),
        pytest.param(changed("cluster", session_timeout_ms=9000),
                     ("cluster.session_timeout_ms",), False, id="cluster needs a restart"),
    ],
)
def test_reload_plan(loaded, need_restart, router_restarted):
    plan = plan_reload(RUNNING, loaded, tokens_changed=False)
    assert plan.need_restart == need_restart
    assert plan.restart_router == router_restarted
    # What needs a restart is kept as it runs; everything else is taken.
    assert plan.effective.service == RUNNING.service
    assert plan.effective.cluster == RUNNING.cluster
    for section in ("auth", "logging", "limits", "read_model", "storage", "supervisor"):
        assert getattr(plan.effective, section) == getattr(loaded, section)


def test_a_new_admin_token_file_restarts_the_router_even_with_the_same_config():
    assert plan_reload(RUNNING, RUNNING, tokens_changed=True).restart_router


@pytest.mark.parametrize(
    ("address", "url"),
    [
        (("127.0.0.1", 8080), "http://127.0.0.1:8080"),
        (("0.0.0.0", 8080), "http://127.0.0.1:8080"),
        (("::", 8080, 0, 0), "http://[::1]:8080"),
        (("10.1.2.3", 80), "http://10.1.2.3:80"),
    ],
)
def test_the_supervisor_reaches_its_own_router_even_on_a_wildcard_bind(address, url):
    assert local_url(address) == url
