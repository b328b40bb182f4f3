"""`syi stack ...`: start, stop and inspect the local stack."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.table import Table

from syi_cli.paths import STATE_DIR
from syi_cli.stack.local_stack import LocalStack

stack_app = typer.Typer(help="The local stack: Apache Kafka (KRaft), PostgreSQL and the services.", no_args_is_help=True)
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
    provision(stack.kafka.bootstrap)
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


def provision(bootstrap: str) -> dict[str, str]:
    from syi_shared.admin import provision_topics
    from syi_shared.settings import ServiceSettings

    result = provision_topics(ServiceSettings(kafka_bootstrap_servers=bootstrap))
    created = sorted(name for name, state in result.items() if state == "created")
    say(f"topics: {len(created)} created, {len(result) - len(created)} already present")
    return result


