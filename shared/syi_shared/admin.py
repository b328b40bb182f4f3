"""Idempotent topic provisioning from the registry."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from confluent_kafka.error import KafkaError, KafkaException

from syi_shared.settings import ServiceSettings
from syi_shared.topics import Topic, all_topics


def provision_topics(
    settings: ServiceSettings | None = None,
    topics: Iterable[Topic] | None = None,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Create missing topics and align the configs of existing ones.

    Returns `{name: "created" | "exists"}`; a second run returns only "exists" and changes nothing
    it has not already set.
    """
    wanted = list(topics or all_topics())
    admin = AdminClient((settings or ServiceSettings()).kafka_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    result: dict[str, str] = {}
    new = [
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=replication_factor, config=t.kafka_configs())
        for t in wanted
        if t.name not in existing
    ]
    if new:
        for name, future in admin.create_topics(new, operation_timeout=timeout).items():
            try:
                future.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                result[name] = "exists"
    present = [t for t in wanted if t.name in existing]
    if present:
        resources = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                t.name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in t.kafka_configs().items()
                ],
            )
            for t in present
        ]
        for resource, future in admin.incremental_alter_configs(resources).items():
            future.result()
            result[resource.name] = "exists"
    return result
