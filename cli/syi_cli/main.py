"""`syi`: the project's command line (local stack, topics, services, tapes, calculator)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from syi_cli.stack.commands import stack_app

app = typer.Typer(help="StableYield Index command line.", no_args_is_help=True, add_completion=False)
topics_app = typer.Typer(help="Kafka topics of the registry.", no_args_is_help=True)
tape_app = typer.Typer(help="Tapes: JSON lines of topic messages, played into Kafka or recorded from it.",
                       no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(tape_app, name="tape")

err = Console(stderr=True, soft_wrap=True)

BOOTSTRAP = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers (default: SYI_KAFKA_BOOTSTRAP_SERVERS, "
                                                  "else 127.0.0.1:SYI_KAFKA_PORT, the local stack's broker, "
                                                  "else 127.0.0.1:9092).")
METHODOLOGY = typer.Option(None, "--methodology", envvar="SYI_METHODOLOGY",
                           help="Methodology file (default: methodology.toml of the repository).")


def connect(bootstrap: str | None, check: bool = True):  # -> CliSettings (imported lazily: fast --help)
    """The settings every command that touches Kafka uses; says which broker (stderr), and with
    `check` exits at once when no broker answers there instead of failing later or elsewhere."""
    from syi_cli.settings import broker_problem, cli_settings

    settings = cli_settings(bootstrap)
    settings.announce(lambda line: err.print(line, markup=False, highlight=False))
    if check and (problem := broker_problem(settings)) is not None:
        err.print(f"[red]syi kafka:[/] {escape(problem)}", highlight=False)
        raise typer.Exit(1)
    return settings


def parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if speed <= 0:
        raise typer.BadParameter(f"a positive number or 'max', got {text!r}", param_hint="--speed")
    return speed


def parse_time_option(text: str | None, name: str) -> int | None:
    from syi_shared.timefmt import millis

    if text is None:
        return None
    try:
        return millis(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


@topics_app.command("create")
def topics_create(bootstrap: str = BOOTSTRAP) -> None:
    """Provision every topic of the registry (and its .dlq); idempotent."""
    from syi_cli.stack.commands import provision

    provision(connect(bootstrap).service)


@topics_app.command("list")
def topics_list() -> None:
    """The registry: name, key, partitions, cleanup, retention, who writes and who reads it."""
    from syi_shared.topics import all_topics

    table = Table("topic", "key", "partitions", "cleanup", "retention (days)", "written by", "read by")
    for t in all_topics():
        table.add_row(t.name, t.key_format, str(t.partitions), t.cleanup_policy, f"{t.retention_ms / 86_400_000:g}",
                      ", ".join(t.producers), ", ".join(t.consumers))
    Console().print(table)


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run_service(ctx: typer.Context, service: str = typer.Argument(..., help="e.g. ingest-fred, ray-calc")) -> None:
    """Run one service in the foreground (extra arguments are passed on), on the broker and database
    the other commands use (SYI_KAFKA_BOOTSTRAP_SERVERS or SYI_KAFKA_PORT, SYI_POSTGRES_DSN or SYI_PG_PORT)."""
    from syi_cli.services import service_command

    command = service_command(service, ctx.args)
    settings = connect(None, check=False)  # the service waits for its broker and reports it in /healthz
    os.execvpe(command[0], command, {**os.environ, **settings.service_env})


@tape_app.command("play")
def tape_play(
    tape: Path = typer.Argument(..., exists=True, dir_okay=False, help="Tape file (.jsonl or .jsonl.gz)."),
    speed: str = typer.Option("max", "--speed", help="N x the event-time pace (e.g. 60), or 'max'."),
    start: str = typer.Option(None, "--from", help="Play only messages with event time >= this (UTC, ...Z)."),
    end: str = typer.Option(None, "--to", help="Play only messages with event time < this (UTC, ...Z)."),
    markers: bool = typer.Option(True, "--progress-markers/--no-progress-markers",
                                 help="Announce progress on syi.progress so the calculators close buckets exactly."),
    bootstrap: str = BOOTSTRAP,
) -> None:
    """Produce a tape into its Kafka topics, in file order; invalid lines are reported and skipped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from syi_cli.tape import count_lines, play_tape

    pace, low, high = parse_speed(speed), parse_time_option(start, "--from"), parse_time_option(end, "--to")
    settings = connect(bootstrap)
    with Progress(TextColumn("playing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("play", total=count_lines(tape))
        try:
            result = play_tape(tape, settings.service, pace, low, high,
                               progress=lambda done: bar.update(task, completed=done),
                               announce_progress=markers,
                               on_invalid=lambda bad: err.print(f"[yellow]skipped[/] {bad}", markup=True,
                                                                highlight=False))
        except RuntimeError as exc:
            err.print(f"[red]play failed:[/] {exc}")
            raise typer.Exit(1) from None
    topics = ", ".join(f"{name} {count}" for name, count in sorted(result.by_topic.items()))
    err.print(f"played {result.produced} messages ({topics}) in {result.seconds:.1f} s, "
              f"{result.rate:,.0f} messages/s; {len(result.invalid)} invalid lines skipped", highlight=False)


@tape_app.command("record")
def tape_record(
    topics: str = typer.Option(None, "--topics", help="Comma-separated topics, e.g. cc.prices,cc.orderbook "
                                                      "(with --from-archive: default the five raw inputs)."),
    out: Path = typer.Option(..., "--out", dir_okay=False, help="Tape file to write (.gz: gzip)."),
    until_idle: float = typer.Option(None, "--until-idle", min=0.1,
                                     help="Follow new messages until none arrives for this many seconds "
                                          "(or Ctrl-C). Default: what the topics hold now."),
    from_archive: bool = typer.Option(False, "--from-archive",
                                      help="Rebuild the tape from store-clickhouse's archive of the raw inputs "
                                           "instead of Kafka: any archived interval, past the topics' retention "
                                           "(needs --from and --to)."),
    start: str = typer.Option(None, "--from", help="With --from-archive: event time >= this (UTC, ...Z)."),
    end: str = typer.Option(None, "--to", help="With --from-archive: event time < this (UTC, ...Z)."),
    clickhouse_dsn: str = typer.Option(None, "--clickhouse-dsn",
                                       help="With --from-archive: the archive (default: SYI_CLICKHOUSE_DSN, else the "
                                            "embedded chDB store). A chdb:// store is owned by one process: stop "
                                            "store-clickhouse first; an http(s):// server is read while it runs."),
    warm_up: bool = typer.Option(False, "--warm-up",
                                 help="With --from-archive: begin early enough that the minutes from --from on "
                                      "recompute as published (for syi restate --tape, syi compute): 00:00 UTC at "
                                      "least the methodology's σ window and a T-bill's freshness before --from."),
    methodology: Path = typer.Option(None, "--methodology", exists=True, dir_okay=False,
                                     help="With --warm-up: the methodology file whose windows count (default: "
                                          "methodology.toml of the repository).", envvar="SYI_METHODOLOGY"),
    bootstrap: str = BOOTSTRAP,
) -> None:
    """Record topics into a tape, ordered by event time (from Kafka, or with --from-archive from ClickHouse)."""
    names = [name.strip() for name in (topics or "").split(",") if name.strip()]
    if from_archive:
        if until_idle is not None:
            raise typer.BadParameter("not with --from-archive (the archive is read up to --to)",
                                     param_hint="--until-idle")
        record_from_archive(names, out, start, end, clickhouse_dsn,
                            load_methodology_or_exit(methodology) if warm_up else None)
        return
    for given, name in ((start, "--from"), (end, "--to"), (clickhouse_dsn, "--clickhouse-dsn"),
                        (warm_up or None, "--warm-up")):
        if given is not None:
            raise typer.BadParameter("only with --from-archive", param_hint=name)
    if not names:
        raise typer.BadParameter("required (or --from-archive)", param_hint="--topics")
    from syi_cli.tape import record_tape

    try:
        result = record_tape(names, out, connect(bootstrap).service, until_idle=until_idle)
    except (ValueError, TimeoutError) as exc:
        err.print(f"[red]record failed:[/] {exc}")
        raise typer.Exit(1) from None
    for line in result.skipped:
        err.print(f"[yellow]skipped[/] {line}", highlight=False)
    counts = ", ".join(f"{name} {count}" for name, count in sorted(result.by_topic.items()))
    err.print(f"recorded {result.recorded} messages ({counts or 'none'}) to {out}", highlight=False)


def record_from_archive(names: list[str], out: Path, start: str | None, end: str | None, dsn: str | None,
                        warm_up_for=None) -> None:  # warm_up_for: Methodology | None
    """`syi tape record --from-archive`: the interval's raw inputs from ClickHouse (syi_cli.archive),
    from the warm-up `warm_up_for` needs when given."""
    low, high = parse_time_option(start, "--from"), parse_time_option(end, "--to")
    if low is None or high is None:
        raise typer.BadParameter("--from-archive needs --from and --to", param_hint="--from/--to")
    if warm_up_for is not None:
        from syi_shared.timefmt import time_text

        low = warm_up_for.warm_up_start_ms(low)
        err.print(f"with its warm-up: from {time_text(low)} (methodology {warm_up_for.version})", highlight=False)
    try:
        from syi_cli.archive import ArchiveError, archive_dsn, input_topics, open_archive, rebuild_tape
    except ImportError as exc:
        err.print(f"[red]record failed:[/] --from-archive needs the store-clickhouse package ({exc}); "
                  "install the workspace: uv sync --all-packages", highlight=False)
        raise typer.Exit(1) from None
    from syi_shared.timefmt import time_text

    dsn = archive_dsn(dsn)
    try:
        topics = input_topics(names)
        client = open_archive(dsn, os.environ.get("SYI_CLICKHOUSE_DATABASE") or None)
        try:
            result = rebuild_tape(client, low, high, out, topics)
        finally:
            client.close()
    except (ValueError, ArchiveError) as exc:
        err.print(f"[red]record failed:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    counts = ", ".join(f"{name} {count}" for name, count in sorted(result.by_topic.items()))
    err.print(f"recorded {result.recorded} messages ({counts or 'none'}) from the archive to {out}", highlight=False)
    if not result.recorded:
        held = (f"it holds {time_text(result.archived[0])} to {time_text(result.archived[1])}"
                if result.archived else "it holds no raw input")
        err.print(f"[yellow]the archive has nothing in that interval:[/] {held}", highlight=False)


def load_methodology_or_exit(path: Path | None):  # -> Methodology
    from syi_shared.methodology import MethodologyError, load_methodology

    try:
        return load_methodology(path)
    except MethodologyError as exc:
        err.print(f"[red]methodology:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


@app.command("compute", help=(
    "Compute a tape: one syi.calculated value (JSON) per minute bucket on stdout, in bucket order.\n\n"
    "Covers every bucket from the first input's to the last input's; buckets with no included constituent "
    "(or before the first successful rebalance) publish nothing. published_at is the bucket end unless "
    "--published-at now, so the same tape always gives byte-identical output. Lines of topics that are not "
    "index inputs are ignored; invalid lines are reported on stderr with their line number and skipped.\n\n"
    "Streams: each minute is written as it closes, reading the tape one line at a time, so memory is the "
    "methodology's windows whatever the tape's length; the tape must be in event-time order (give or take "
    "5 minutes). Shows progress on stderr when it is a terminal."))
def compute(
    tape: Path = typer.Option(..., "--tape", exists=True, dir_okay=False, help="Tape file (.jsonl or .jsonl.gz)."),
    methodology: Path = METHODOLOGY,
    ray_out: Path = typer.Option(None, "--ray-out", dir_okay=False, help="Also write the ray.calculated values here."),
    published_at: str = typer.Option("bucket-end", "--published-at",
                                     help="'bucket-end' (default: deterministic, byte-identical output for the "
                                          "same tape) or 'now' (wall clock; published_at is not part of the cid)."),
) -> None:
    from contextlib import nullcontext

    from syi_cli.compute import ComputeCounts, ComputeDisplay, stream_tape, write_rays, write_values
    from syi_cli.tape import ReadProgress, open_binary
    from syi_shared.methodology.engine import OutOfOrder

    if published_at not in ("bucket-end", "now"):
        raise typer.BadParameter("'bucket-end' or 'now'", param_hint="--published-at")
    rules = load_methodology_or_exit(methodology)
    counts, reading = ComputeCounts(), ReadProgress()
    # Streams: each bucket's lines are written as it closes (memory: the methodology's windows).
    with open_binary(ray_out, "wb") if ray_out is not None else nullcontext() as ray_sink, \
            ComputeDisplay(err, counts, reading) as display:
        try:
            for ray_bucket, value in stream_tape(
                    tape, rules, published_at,  # type: ignore[arg-type]
                    on_invalid=lambda bad: display.print(f"[yellow]skipped[/] {bad}"), counts=counts, progress=reading):
                if value is not None:
                    write_values((value,), sys.stdout.buffer)
                if ray_sink is not None:
                    write_rays((ray_bucket,), ray_sink)
                display.update()
        except OutOfOrder as exc:
            sys.stdout.buffer.flush()
            display.print(f"[red]cannot compute[/]: {escape(str(exc))}")
            raise typer.Exit(1) from None
    sys.stdout.buffer.flush()
    err.print(f"computed {counts.buckets} buckets from {counts.messages} messages: "
              f"{counts.values} index values; {counts.invalid} invalid lines skipped", highlight=False)


@app.command("verify", help=(
    "Recompute every record's cid and check that each prev_cid links to the previous record (null on the "
    "first).\n\nExit 0 with a summary when the chain is intact; exit 1 at the first broken link, saying "
    "where it is and what differs."))
def verify(
    file: Path = typer.Argument(None, exists=True, dir_okay=False,
                                help="syi.calculated values, one JSON per line (syi compute output) or a tape."),
    topic: str = typer.Option(None, "--topic", help="Verify a Kafka topic instead, e.g. syi.calculated."),
    recompute: bool = typer.Option(False, "--recompute", help=(
        "Also re-derive each record of --topic from syi-calc's checkpoint and the input topics, and report "
        "the first whose input_offsets, input_cid, values or cid differ.")),
    from_time: str = typer.Option(None, "--from", help="--recompute: first bucket end to check (ISO time)."),
    to_time: str = typer.Option(None, "--to", help="--recompute: last bucket end to check (ISO time)."),
    instance: str = typer.Option("syi-calc", "--instance", help="--recompute: syi-calc's SYI_INSTANCE_ID."),
    methodology: Path = METHODOLOGY,
    since_ms: int = typer.Option(None, "--since-ms", hidden=True, help="Only what was appended since (Kafka ms)."),
    bootstrap: str = BOOTSTRAP,
) -> None:
    from syi_cli.verify import records_in_file, records_on_topic, verify_chain

    if (file is None) == (topic is None):
        raise typer.BadParameter("give either a FILE or --topic (one of them)")
    if recompute and topic is None:
        raise typer.BadParameter("--recompute needs --topic (the inputs are read from Kafka)")
    if file is not None:
        records = records_in_file(file)
    else:
        from syi_cli.settings import topic_exists

        settings = connect(bootstrap)
        if not topic_exists(settings, topic):
            err.print(f"[red]no topic {escape(topic)}[/] on {escape(str(settings.kafka))}", highlight=False)
            raise typer.Exit(1)
        records = records_on_topic(settings.service, topic, since_ms)
    report = verify_chain(records)
    out = Console(highlight=False, soft_wrap=True)
    if report.broken is not None:
        out.print(f"[red]broken[/] after {report.records} good records: {report.broken}")
        raise typer.Exit(1)
    if not report.records:
        out.print("[red]no records to verify[/]")
        raise typer.Exit(1)
    out.print(f"[green]intact[/]: {report.records} records, buckets {report.first_bucket} .. {report.last_bucket}, "
              f"last cid {report.last_cid}")
    if recompute:
        _recompute(settings.service, topic, instance, methodology, from_time, to_time, since_ms, out)


def _recompute(settings, topic: str, instance: str, methodology: Path | None, from_time: str | None,  # noqa: ANN001
               to_time: str | None, since_ms: int | None, out: Console) -> None:
    from syi_shared.checkpoint import CheckpointError
    from syi_shared.methodology.params import load_methodology
    from syi_shared.streaming.recompute import recompute_index
    from syi_shared.timefmt import millis

    try:
        report = recompute_index(
            settings, load_methodology(methodology), instance=instance, topic=topic,
            from_ms=millis(from_time) if from_time else None, to_ms=millis(to_time) if to_time else None,
            since_ms=since_ms,
        )
    except (CheckpointError, TimeoutError) as exc:
        out.print(f"[red]cannot recompute[/]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    if report.difference is not None:
        out.print(f"[red]differs[/] after {report.checked - 1} equal records: {escape(str(report.difference))}")
        raise typer.Exit(1)
    if not report.checked:
        out.print("[red]no records to recompute[/] in the range (after the checkpoint it starts from)")
        raise typer.Exit(1)
    out.print(f"[green]recomputed[/]: {report.checked} records equal their recomputation, buckets "
              f"{report.first_bucket} .. {report.last_bucket} (from the checkpoint at {report.checkpoint_bucket})")


@app.command("restate", help=(
    "Correct published minutes: recompute [--from, --to] and have syi-calc publish a revision of each "
    "minute whose value changed materially (docs/methodology.md §9).\n\n"
    "Each recomputed minute is compared with its latest revision on syi.calculated: a change of at least "
    "`restatement.materiality_bp` basis points (methodology file), another status or another set of included "
    "constituents is material. One request per material minute goes to syi.restatements; syi-calc, the "
    "index's only producer, publishes each as revision + 1 (supersedes_cid, restatement_reason) in the one "
    "chain, or dead-letters it. The command waits for every answer and prints the revisions. --dry-run "
    "prints the table and publishes nothing; running the same restatement again publishes nothing.\n\n"
    "--tape: the tape must hold the interval and its warm-up (from where the live run started, or from "
    "00:00 UTC at least 30 days before --from). --from-topics: from syi-calc's checkpoint at or before --from "
    "and the input topics, as `syi verify --recompute` does (with ray-level changes, ray-calc's too, from its "
    "checkpoint and the raw inputs); refused (pointing to `syi tape record --from-archive`) when the topics no "
    "longer hold them, or when the file changes what a checkpoint holds: windowed parameters, or those the "
    "weights depend on with no daily rebalance to recompute (docs/operations.md, \"Restating\")."))
def restate(
    start: str = typer.Option(..., "--from", help="First minute (bucket end) to restate, e.g. 2026-11-27T10:01:00Z."),
    end: str = typer.Option(..., "--to", help="Last minute (bucket end) to restate, inclusive."),
    reason: str = typer.Option(..., "--reason", help="Why: published with every revision (restatement_reason)."),
    tape: Path = typer.Option(None, "--tape", exists=True, dir_okay=False,
                              help="Recompute from this tape (.jsonl or .jsonl.gz): the interval and its warm-up."),
    from_topics: bool = typer.Option(False, "--from-topics", help="Recompute from the calculators' checkpoints "
                                                                   "and the input topics (no tape)."),
    baseline: Path = typer.Option(None, "--baseline", exists=True, dir_okay=False, help=(
        "--from-topics: the methodology file the calculators run with (default: the repository's "
        "methodology.toml).")),
    instance: str = typer.Option("syi-calc", "--instance", help="--from-topics: syi-calc's SYI_INSTANCE_ID."),
    ray_instance: str = typer.Option("ray-calc", "--ray-instance", help="--from-topics: ray-calc's SYI_INSTANCE_ID."),
    methodology: Path = METHODOLOGY,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would change; publish nothing."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0, help="Seconds to wait for syi-calc's answers."),
    since_ms: int = typer.Option(None, "--since-ms", hidden=True, help="Only records appended since (Kafka ms)."),
    bootstrap: str = BOOTSTRAP,
) -> None:
    from syi_cli import restate as restating
    from syi_shared.timefmt import now_text, to_millis, parse_utc

    if (tape is not None) == from_topics:  # exactly one of the two
        raise typer.BadParameter("give either --tape (the interval and its warm-up) or --from-topics",
                                 param_hint="--tape/--from-topics")
    if not reason.strip():
        raise typer.BadParameter("a restatement must say why", param_hint="--reason")
    try:
        first, last = restating.bucket_range(start, end)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--from/--to") from None
    rules = load_methodology_or_exit(methodology)
    settings = connect(bootstrap)
    if from_topics:
        from syi_shared.checkpoint import CheckpointError
        from syi_shared.methodology.params import DEFAULT_PATH

        running = load_methodology_or_exit(baseline or DEFAULT_PATH)
        err.print(f"recomputing {start} .. {end} from syi-calc's checkpoint and the input topics", highlight=False)
        try:
            latest = restating.published(settings.service, first, last, since_ms)
            restating.check_baseline(running, latest)
            values = restating.recompute_from_topics(settings.service, running, rules, first, last, instance, since_ms,
                                                      ray_instance)
        except restating.Refused as exc:
            err.print(f"[red]refused:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except (CheckpointError, TimeoutError) as exc:  # a state record unreadable, inputs not readable in time
            err.print(f"[red]cannot recompute[/]: {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
    else:
        err.print(f"recomputing {start} .. {end} from {tape}", highlight=False)
        values = restating.recompute(tape, rules, first, last)
        latest = restating.published(settings.service, first, last, since_ms)
    if not values:
        err.print(f"[red]the {'topics give' if from_topics else 'tape gives'} no minute in the interval[/] "
                  "(is it closed and covered?)", highlight=False)
        raise typer.Exit(1)
    changes = restating.plan(values, latest, rules.restatement.materiality_bp)
    # piped, the table keeps whole cids and times rather than the default 80 columns
    out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)
    table = Table("bucket", "old", "new", "Δ bp", "reason", title=f"materiality {rules.restatement.materiality_bp:g} bp")
    for change in changes:
        old = f"{change.old['syi_percent']:.6f} % (r{change.old.get('revision', 0)})" if change.old else "—"
        delta = f"{change.delta_bp:+.3f}" if change.delta_bp is not None else "—"
        why = "; ".join(change.reasons) if change.material else (change.reasons[0] if change.reasons else "not material")
        table.add_row(change.bucket_end, old, f"{change.new.syi_percent:.6f} %", delta,
                      why if change.material else f"[dim]{escape(why)}[/]")
    out.print(table)
    requests = restating.requests_for(changes, reason)
    if dry_run or not requests:
        out.print(f"{len(requests)} of {len(changes)} minutes material; "
                  + ("dry run: nothing published" if dry_run else "nothing to publish"))
        return
    submitted = to_millis(parse_utc(now_text())) - 5_000  # Kafka time, with room for clock skew
    restating.submit(settings.service, requests)
    err.print(f"submitted {len(requests)} restatement requests to syi.restatements; waiting for syi-calc", highlight=False)
    outcome = restating.await_outcome(
        settings.service, requests, submitted, timeout,
        progress=lambda answered, total: err.print(f"  {answered}/{total} answered", highlight=False))
    done = Table("bucket", "revision", "syi %", "supersedes", "cid", title="published")
    for record in sorted(outcome.published.values(), key=lambda r: r["bucket_end"]):
        done.add_row(record["bucket_end"], str(record["revision"]), f"{record['syi_percent']:.6f}",
                     record["supersedes_cid"], record["cid"])
    out.print(done)
    for request_id, why in outcome.refused.items():
        out.print(f"[red]refused[/] {request_id}: {escape(why)}")
    if outcome.missing:
        out.print(f"[red]no answer within {timeout:g} s[/] for {len(outcome.missing)} requests (is syi-calc running?)")
    if outcome.refused or outcome.missing:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="syi")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
