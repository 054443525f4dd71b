"""The router's merged `/metrics`: worker families gain a `worker` label and merge by name, a
worker that does not answer is left out and reported, and the result always parses."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from capsvc.config import Config, ServiceConfig
from capsvc.errors import UpstreamUnavailable
from capsvc.http.answer_reader import Answer
from capsvc.router.metrics import host_exposition

WORKER = """# HELP capsvc_commit_batch_commands Commands answered by one group commit
# TYPE capsvc_commit_batch_commands histogram
capsvc_commit_batch_commands_bucket{le="1.0"} 2.0
capsvc_commit_batch_commands_bucket{le="+Inf"} 3.0
capsvc_commit_batch_commands_count 3.0
capsvc_commit_batch_commands_sum 5.0
# HELP capsvc_clash a metric two processes disagree about
# TYPE capsvc_clash counter
capsvc_clash_total 1.0
"""
ROUTER = b"""# HELP capsvc_clash a metric two processes disagree about
# TYPE capsvc_clash gauge
capsvc_clash 7.0
"""


class FakeWorker:
    def __init__(self, name: str, text: str | None) -> None:
        self.name, self.text, self.socket_path = name, text, f"/nowhere/{name}.sock"

    async def request(self, method: str, path: str, timeout_s: float) -> Answer:
        if self.text is None:
            raise UpstreamUnavailable(f"worker {self.name} is unreachable")
        return Answer(200, [], self.text.encode())


def test_workers_are_merged_with_a_label_and_absentees_are_reported(tmp_path):
    config = Config(service=ServiceConfig(data_dir=str(tmp_path)))
    workers = [FakeWorker("w0", WORKER), FakeWorker("w1", WORKER), FakeWorker("w2", None)]
    shards = [{"shard": 0, "owner": {"host": "local", "worker": 1}}, {"shard": 1, "owner": None}]
    text = asyncio.run(host_exposition(config, workers, [ROUTER], shards)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    counts = {s.labels["worker"]: s.value for s in families["capsvc_commit_batch_commands"].samples
              if s.name.endswith("_count")}
    assert counts == {"w0": 3.0, "w1": 3.0}
    up = {s.labels["source"]: s.value for s in families["capsvc_metrics_source_up"].samples}
    assert up == {"w0": 1.0, "w1": 1.0, "w2": 0.0, "supervisor": 0.0}
    assert families["capsvc_clash"].type == "gauge"  # the first source's type wins
    assert [s.labels for s in families["capsvc_shard_owner"].samples] == [
        {"shard": "0", "host": "local", "worker": "1"}]
