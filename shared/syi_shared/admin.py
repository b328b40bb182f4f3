"""Idempotent topic provisioning from the registry, replicated as the cluster allows.

Replication (docs/operations.md, "Three brokers"): `SYI_TOPIC_REPLICATION_FACTOR`, else as many
copies as the cluster has brokers, up to 3; with 3 copies or more, `min.insync.replicas=2`
(`SYI_TOPIC_MIN_INSYNC_REPLICAS`), so an `acks=all` write is on two brokers before it is
acknowledged and one broker may die without losing it or stopping the writers.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from confluent_kafka.error import KafkaError, KafkaException
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from syi_shared.logs import get_logger
from syi_shared.settings import ServiceSettings
from syi_shared.topics import Topic, all_topics

MAX_DEFAULT_REPLICATION = 3  # copies wanted when nothing says otherwise (and the cluster has them)


class TopicSettings(BaseSettings):
    """SYI_TOPIC_REPLICATION_FACTOR and SYI_TOPIC_MIN_INSYNC_REPLICAS; unset: derived (module doc)."""

    model_config = SettingsConfigDict(env_prefix="SYI_TOPIC_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore")

    replication_factor: int | None = Field(default=None, ge=1)
    min_insync_replicas: int | None = Field(default=None, ge=1)


def min_insync_for(replication_factor: int) -> int | None:
    """2 for 3 copies or more; fewer copies keep the broker's default (1): with 2 copies, 2 in sync
    would stop every writer when either broker is down."""
    return 2 if replication_factor >= 3 else None


def replication(brokers: int, replication_factor: int | None = None,
                min_insync_replicas: int | None = None) -> tuple[int, int | None]:
    """(replication factor, min.insync.replicas or None for the broker's default) for a cluster of
    `brokers`: the arguments, else the settings, else derived (module doc)."""
    configured = TopicSettings()
    factor = replication_factor or configured.replication_factor or max(1, min(brokers, MAX_DEFAULT_REPLICATION))
    return factor, min_insync_replicas or configured.min_insync_replicas or min_insync_for(factor)


def provision_topics(
    settings: ServiceSettings | None = None,
    topics: Iterable[Topic] | None = None,
    replication_factor: int | None = None,
    timeout: float = 30.0,
    min_insync_replicas: int | None = None,
) -> dict[str, str]:
    """Create missing topics and align the configs of existing ones.

    Returns `{name: "created" | "exists"}`; a second run returns only "exists" and changes nothing
    it has not already set. Kafka cannot add copies to an existing topic: one with fewer than
    wanted is logged and left as it is (its `min.insync.replicas` too, which it could not meet).
    """
    wanted = list(topics or all_topics())
    admin = AdminClient((settings or ServiceSettings()).kafka_config())
    metadata = admin.list_topics(timeout=timeout)
    factor, min_isr = replication(len(metadata.brokers), replication_factor, min_insync_replicas)
    extra = {"min.insync.replicas": str(min_isr)} if min_isr is not None else {}
    existing = metadata.topics
    result: dict[str, str] = {}
    new = [
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=factor,
                 config={**t.kafka_configs(), **extra})
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
        resources = []
        for t in present:
            copies = min((len(p.replicas) for p in existing[t.name].partitions.values()), default=0)
            configs = {**t.kafka_configs(), **(extra if copies >= factor else {})}
            if copies < factor:
                get_logger().warning("topic has fewer copies than wanted; Kafka does not add copies to an "
                                     "existing topic (recreate it, or reassign its partitions)",
                                     topic=t.name, replication_factor=copies, wanted=factor)
            resources.append(ConfigResource(
                ConfigResource.Type.TOPIC,
                t.name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()
                ],
            ))
        for resource, future in admin.incremental_alter_configs(resources).items():
            future.result()
            result[resource.name] = "exists"
    return result
