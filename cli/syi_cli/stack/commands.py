"""`syi stack ...`: start, stop and inspect the local stack."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.table import Table

from syi_cli.paths import STATE_DIR
from syi_cli.stack.local_stack import LocalStack
from syi_cli.stack.system import System, wait_for_first_index

stack_app = typer.Typer(help="The local stack: Apache Kafka (KRaft), PostgreSQL and the services.", no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)  # long URLs stay on one line in logs


def say(message: str) -> None:
    console.print(f"[bold cyan]syi[/] {message}")


def local_stack() -> LocalStack:
    return LocalStack(
        STATE_DIR,
        kafka_port=int(os.environ.get("SYI_KAFKA_PORT", "9092")),
        pg_port=int(os.environ.get("SYI_PG_PORT", "5432")),
    )


def system(live: bool = False) -> System:
    stack = local_stack()
    return System(STATE_DIR, stack.env, live=live or os.environ.get("LIVE") == "1")


@stack_app.command("up")
def stack_up(
    live: bool = typer.Option(False, "--live", help="Use the real APIs instead of the replay server (FRED_API_KEY)."),
    infra_only: bool = typer.Option(False, "--infra-only", help="Only Kafka, PostgreSQL and the topics."),
    wait: bool = typer.Option(True, help="Wait for the first published index value before returning."),
) -> None:
    """Start Kafka, PostgreSQL, the topics and every service (on replayed market data unless --live)."""
    stack = local_stack()
    stack.up(say)
    provision(stack.kafka.bootstrap)
    say(f"Kafka {stack.kafka.bootstrap}, PostgreSQL {stack.postgres.dsn}")
    if infra_only:
        return
    services = system(live)
    services.up(say)
    if wait:
        first = wait_for_first_index(stack.kafka.bootstrap, say)
        if first is None:
            say("[red]no index value yet[/]: see `syi stack status` and the logs in .stack/logs/")
            raise typer.Exit(1)
        say(f"first index value: SYI {first['syi_percent']:.4f} % for the minute ending {first['bucket_end']} "
            f"(status {first['status']})")
    for name, url in services.urls().items():
        say(f"{name:>9}: {url}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop every process the stack started (by pid)."""
    local_stack().down(say)
    say("stack is down")


@stack_app.command("restart")
def stack_restart(service: str = typer.Argument(..., help="e.g. syi-calc, ws-gateway")) -> None:
    """Restart one service (stop by pid, start, wait until healthy)."""
    system().restart(service, say)


@stack_app.command("status")
def stack_status() -> None:
    """Each process: pid, health and how long ago it last wrote output."""
    stack = local_stack()
    everything = system()
    services = [everything.process(spec) for spec in everything.specs]
    known = {p.name for p in services}
    infrastructure = stack.infrastructure(say)
    # infrastructure, then the services in start order, then anything else with a pid file
    others = [p for p in stack.processes(say)[len(infrastructure):] if p.name not in known]
    table = Table("process", "pid", "state", "last output", "log")
    any_down = False
    for process in [*infrastructure, *services, *others]:
        pid = process.pid()
        if pid is None and not process.pid_file.exists() and process.name in known:
            continue  # never started (e.g. `up --infra-only`)
        ready = pid is not None and (process.ready is None or process.ready())
        if ready:
            state = "[green]healthy[/]"
        elif pid:
            state = "[yellow]unhealthy[/]"
        else:  # a pid file without its process: it died; no pid file: it was stopped
            state = "[red]dead[/]" if process.pid_file.exists() else "stopped"
        any_down |= not ready
        age = process.last_output_age()
        table.add_row(process.name, str(pid or "-"), state, "-" if age is None else f"{age:.0f} s ago",
                      str(process.log_file.relative_to(STATE_DIR.parent)) if process.log_file.is_relative_to(
                          STATE_DIR.parent) else str(process.log_file))
    Console().print(table)
    raise typer.Exit(1 if any_down else 0)


def provision(bootstrap: str) -> dict[str, str]:
    from syi_shared.admin import provision_topics
    from syi_shared.settings import ServiceSettings

    result = provision_topics(ServiceSettings(kafka_bootstrap_servers=bootstrap))
    created = sorted(name for name, state in result.items() if state == "created")
    say(f"topics: {len(created)} created, {len(result) - len(created)} already present")
    return result


