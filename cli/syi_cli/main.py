"""`syi`: the project's command line (local stack, topics, services, tapes, calculator)."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.table import Table

from syi_cli.paths import STATE_DIR
from syi_cli.stack.local_stack import LocalStack

app = typer.Typer(help="StableYield Index command line.", no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The local stack: Apache Kafka (KRaft) and PostgreSQL.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics of the registry.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")

console = Console(stderr=True)


def say(message: str) -> None:
    console.print(f"[bold cyan]syi[/] {message}")


def local_stack() -> LocalStack:
    return LocalStack(
        STATE_DIR,
        kafka_port=int(os.environ.get("SYI_KAFKA_PORT", "9092")),
        pg_port=int(os.environ.get("SYI_PG_PORT", "5432")),
    )


@stack_app.command("up")
def stack_up() -> None:
    """Start Kafka and PostgreSQL (downloading Kafka on first use) and provision the topics."""
    stack = local_stack()
    stack.up(say)
    _provision(stack.kafka.bootstrap)
    say(f"stack is up: Kafka {stack.kafka.bootstrap}, PostgreSQL {stack.postgres.dsn}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop every process the stack started (by pid)."""
    local_stack().down(say)
    say("stack is down")


@stack_app.command("status")
def stack_status() -> None:
    """Each process: pid, health and how long ago it last wrote output."""
    table = Table("process", "pid", "state", "last output")
    any_down = False
    for process in local_stack().processes(say):
        pid = process.pid()
        ready = pid is not None and (process.ready is None or process.ready())
        state = "[green]healthy[/]" if ready else ("[yellow]starting[/]" if pid else "[red]stopped[/]")
        any_down |= pid is None
        age = process.last_output_age()
        table.add_row(process.name, str(pid or "-"), state, "-" if age is None else f"{age:.0f} s ago")
    Console().print(table)
    raise typer.Exit(1 if any_down else 0)


def _provision(bootstrap: str) -> dict[str, str]:
    from syi_shared.admin import provision_topics
    from syi_shared.settings import ServiceSettings

    result = provision_topics(ServiceSettings(kafka_bootstrap_servers=bootstrap))
    created = sorted(name for name, state in result.items() if state == "created")
    say(f"topics: {len(created)} created, {len(result) - len(created)} already present")
    return result


@topics_app.command("create")
def topics_create() -> None:
    """Provision every topic of the registry (and its .dlq); idempotent."""
    from syi_shared.settings import ServiceSettings

    _provision(ServiceSettings().kafka_config()["bootstrap.servers"])


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
