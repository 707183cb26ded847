"""The local stack's pure parts."""

from __future__ import annotations

from doorstep_cli.localstack import new_cluster_id


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
