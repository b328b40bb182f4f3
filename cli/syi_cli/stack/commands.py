"""`syi stack ...`: start, stop and inspect the local stack."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from syi_cli.stack.local_stack import LocalStack
from syi_cli.stack.system import System, wait_for_first_index

if TYPE_CHECKING:  # pydantic-settings is imported when a command runs, not for --help
    from syi_cli.settings import CliSettings
    from syi_shared.settings import ServiceSettings

stack_app = typer.Typer(help="The local stack: Apache Kafka (KRaft), PostgreSQL and the services.", no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)  # long URLs stay on one line in logs


def say(message: str) -> None:
    console.print(f"[bold cyan]syi[/] {message}")


def plain(line: str) -> None:
    console.print(line, markup=False, highlight=False)


def cli_settings() -> CliSettings:
    from syi_cli.settings import cli_settings as resolve

    return resolve()


def local_stack(settings: CliSettings, brokers: int | None = None) -> LocalStack:
    """The stack of the state folder; `brokers`: its Kafka's size, else as the last `up` left it."""
    return LocalStack(settings.stack.state_dir, kafka_port=settings.stack.kafka_port,
                      pg_port=settings.stack.pg_port, brokers=brokers)


def system(settings: CliSettings, live: bool = False) -> System:
    stack = local_stack(settings)
    return System(settings.stack.state_dir, stack.env, live=live or os.environ.get("LIVE") == "1")


@stack_app.command("up")
def stack_up(
    live: bool = typer.Option(False, "--live", help="Use the real APIs instead of the replay server (FRED_API_KEY)."),
    infra_only: bool = typer.Option(False, "--infra-only", help="Only Kafka, PostgreSQL and the topics."),
    wait: bool = typer.Option(True, help="Wait for the first published index value before returning."),
    brokers: int | None = typer.Option(
        None, "--brokers", min=1,
        help="Kafka nodes: 3 runs a cluster (ports SYI_KAFKA_PORT, +2, +4; topics replicated 3 times, "
             "min.insync.replicas 2). Default: the running cluster's size, else 1."),
) -> None:
    """Start Kafka, PostgreSQL, the topics and every service (on replayed market data unless --live)."""
    settings = cli_settings()
    settings.announce_stack(plain)
    stack = local_stack(settings, brokers or local_stack(settings).running_brokers() or 1)
    stack.up(say)
    local = settings.service.model_copy(update={"kafka_bootstrap_servers": stack.kafka.bootstrap})
    provision(local, brokers=stack.kafka.size)
    say(f"Kafka {stack.kafka.bootstrap}, PostgreSQL {stack.postgres.dsn}")
    if infra_only:
        return
    services = system(settings, live)
    services.up(say)
    if wait:
        first = wait_for_first_index(local, say)
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
    local_stack(cli_settings()).down(say)
    say("stack is down")


@stack_app.command("restart")
def stack_restart(service: str = typer.Argument(..., help="e.g. syi-calc, ws-gateway")) -> None:
    """Restart one service (stop by pid, start, wait until it answers; says if it is degraded and why)."""
    settings = cli_settings()
    settings.announce_stack(plain)
    system(settings).restart(service, say)


@stack_app.command("status")
def stack_status() -> None:
    """Each process: pid, health (ok, degraded or failed, with the service's reasons) and its last output.

    Exit 0 only when every started process is healthy (its /healthz says ok)."""
    settings = cli_settings()
    settings.announce_stack(plain)
    state_dir = settings.stack.state_dir
    stack = local_stack(settings)
    everything = system(settings)
    known = {spec.name: spec for spec in everything.specs}
    infrastructure = stack.infrastructure(say)
    # a cluster's nodes as the cluster sees them (in sync or catching up); one node: does it answer
    report = stack.kafka.health() if stack.kafka.size > 1 else {}
    brokers = {node.name: report[node.node_id] for node in stack.kafka.nodes if node.node_id in report}
    # infrastructure, then the services in start order, then anything else with a pid file
    services = [everything.process(spec) for spec in everything.specs]
    others = [p for p in stack.processes(say)[len(infrastructure):] if p.name not in known]
    table = Table("process", "pid", "state", "last output", "log")
    explained: list[tuple[str, str, tuple[str, ...]]] = []  # (process, state, reasons)
    any_down = False
    for process in [*infrastructure, *services, *others]:
        pid = process.pid()
        if pid is None and not process.pid_file.exists() and process.name in known:
            continue  # never started (e.g. `up --infra-only`)
        if pid is None:  # a pid file without its process: it died; no pid file: it was stopped
            state, colour, reasons = ("dead", "red", ()) if process.pid_file.exists() else ("stopped", "", ())
        elif process.name in known or process.name in brokers:
            health = brokers.get(process.name) or everything.health(known[process.name])
            state, colour = STATES.get(health.status, (health.status, "yellow"))
            reasons = health.reasons
        else:
            up = process.ready is None or process.ready()
            state, colour, reasons = ("healthy", "green", ()) if up else ("unhealthy", "yellow", ())
        any_down |= state != "healthy"
        if reasons:
            explained.append((process.name, state, reasons))
        age = process.last_output_age()
        log = process.log_file
        table.add_row(process.name, str(pid or "-"), f"[{colour}]{state}[/]" if colour else state,
                      "-" if age is None else f"{age:.0f} s ago",
                      str(log.relative_to(state_dir.parent)) if log.is_relative_to(state_dir.parent) else str(log))
    out = Console(highlight=False, soft_wrap=True)
    out.print(table)
    if brokers:
        up = sum(health.ok for health in brokers.values())
        out.print(f"kafka: {up} of {len(brokers)} brokers in sync ({stack.kafka.bootstrap})", markup=False)
    for name, state, reasons in explained:  # below the table: reasons are long, tables are narrow
        out.print(f"{name} {state}:", markup=False)
        for reason in reasons:
            out.print(f"  - {reason}", markup=False)
    raise typer.Exit(1 if any_down else 0)


# what a service's /healthz status is shown as (ok reads "healthy", as `up` and `restart` say it)
STATES = {"ok": ("healthy", "green"), "degraded": ("degraded", "yellow"), "failed": ("failed", "red"),
          "unreachable": ("unhealthy", "yellow")}


def provision(settings: ServiceSettings, brokers: int | None = None) -> dict[str, str]:
    """Every registry topic, replicated as `syi_shared.admin.replication` says for a cluster of
    `brokers` (else of the brokers the cluster lists)."""
    from confluent_kafka.admin import AdminClient

    from syi_shared.admin import provision_topics, replication

    if brokers is None:
        brokers = len(AdminClient(settings.kafka_config()).list_topics(timeout=30).brokers)
    factor, min_isr = replication(brokers)
    result = provision_topics(settings, replication_factor=factor, min_insync_replicas=min_isr)
    created = sorted(name for name, state in result.items() if state == "created")
    copies = f" (replication factor {factor}, min.insync.replicas {min_isr or 1})" if factor > 1 else ""
    say(f"topics: {len(created)} created, {len(result) - len(created)} already present{copies}")
    return result
