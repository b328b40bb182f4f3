"""`syi`: the project's command line (local stack, topics, services, tapes, calculator)."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.table import Table

from syi_cli.stack.commands import stack_app

app = typer.Typer(help="StableYield Index command line.", no_args_is_help=True, add_completion=False)
topics_app = typer.Typer(help="Kafka topics of the registry.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")


@topics_app.command("create")
def topics_create() -> None:
    """Provision every topic of the registry (and its .dlq); idempotent."""
    from syi_shared.settings import ServiceSettings

    from syi_cli.stack.commands import provision

    provision(ServiceSettings().kafka_config()["bootstrap.servers"])


@topics_app.command("list")
def topics_list() -> None:
    """The registry: name, key, partitions, cleanup, retention."""
    from syi_shared.topics import all_topics

    table = Table("topic", "key", "partitions", "cleanup", "retention (days)", "producer")
    for t in all_topics():
        table.add_row(t.name, t.key_format, str(t.partitions), t.cleanup_policy, f"{t.retention_ms / 86_400_000:g}",
                      t.producer)
    Console().print(table)


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run_service(ctx: typer.Context, service: str = typer.Argument(..., help="e.g. ingest-fred, ray-calc")) -> None:
    """Run one service in the foreground (extra arguments are passed on)."""
    from syi_cli.services import service_command

    command = service_command(service, ctx.args)
    os.execvp(command[0], command)


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="syi")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
