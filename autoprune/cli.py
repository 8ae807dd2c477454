"""The ``autoprune`` command line (Typer + Rich).

Thin on purpose: each command parses its arguments, calls one module (spec, store, runner,
export...) and prints. Errors are mapped once, in :class:`_ErrorMappingGroup`:
:class:`~autoprune.errors.UserInputError` -> ``error: <message>`` as one line on stderr and
exit 2; any other error -> one line and exit 1 (``AUTOPRUNE_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoprune import __version__
from autoprune.drift import DEFAULT_DRIFT_GUARD, DriftGuard
from autoprune.errors import AutopruneError, ExportError, UserInputError

EXIT_USER_ERROR = 2
EXIT_ERROR = 1


class _ErrorMappingGroup(typer.core.TyperGroup):
    """Turns exceptions from any (sub)command into one stderr line and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):  # usage errors, exits: as they are
            raise
        except UserInputError as exc:
            _fail(str(exc), EXIT_USER_ERROR)
        except Exception as exc:
            if os.environ.get("AUTOPRUNE_DEBUG"):
                raise
            message = str(exc) if isinstance(exc, AutopruneError) else f"{type(exc).__name__}: {exc}"
            _fail(message, EXIT_ERROR)


def _fail(message: str, code: int) -> NoReturn:
    # Plain echo, not Rich: Rich would wrap a long message over several lines.
    first = " ".join(message.split()) or "failed"
    typer.echo(f"error: {first}", err=True)
    raise typer.Exit(code)


app = typer.Typer(
    cls=_ErrorMappingGroup,
    help="Search compressed BERT-family models under a latency budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(cls=_ErrorMappingGroup, help="Manage the trials database.",
                     no_args_is_help=True)
latency_app = typer.Typer(cls=_ErrorMappingGroup, help="Latency models.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(latency_app, name="latency")

err = Console(stderr=True, highlight=False)
PIPE_WIDTH = 160  # tables piped to a file or another program are not squeezed to 80 columns


def _out() -> Console:
    """A console on the current stdout (looked up per call: tests swap sys.stdout)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)

DbOption = Annotated[
    str | None,
    typer.Option("--db", metavar="URL",
                 help="Database URL (default: $AUTOPRUNE_DB, else ~/.autoprune/autoprune.db)."),
]
MaxDriftOption = Annotated[float, typer.Option(
    "--max-drift", metavar="F",
    help="Measure the latency again when dense runs more than F (relative) slower than the "
         "figure it was profiled at on this machine: a slow period.")]
DriftAttemptsOption = Annotated[int, typer.Option(
    "--drift-attempts", metavar="N",
    help="Latency measurements at most, a minute apart, while dense runs slower than its "
         "profile (1: never measure again).")]
JobArgument = Annotated[int, typer.Argument(metavar="JOB", help="Job id.")]


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class VerifyFormat(str, Enum):
    table = "table"
    json = "json"


class ExecutorKind(str, Enum):
    local = "local"
    ray = "ray"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"autoprune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Search compressed BERT-family models under a latency budget."""


def _store(db: str | None) -> Any:
    from autoprune.store import Store

    return Store(db)


def _time(value: datetime | None, seconds: bool = True) -> str:
    pattern = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return "" if value is None else value.astimezone(UTC).strftime(pattern)


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


# ---- jobs ----------------------------------------------------------------------------------
@app.command()
def submit(
    spec: Annotated[Path, typer.Argument(metavar="JOB.yaml", help="The job spec.")],
    db: DbOption = None,
) -> None:
    """Validate a job spec and queue it; prints the job id."""
    from autoprune.runner.prepare import check_controller, check_margin_is_resolvable
    from autoprune.spec import JobSpec

    job_spec = JobSpec.load(spec)  # validate before touching the database
    check_controller(job_spec)
    check_margin_is_resolvable(job_spec)
    store = _store(db)
    job_id = store.create_job(job_spec.to_json(), job_spec.name)
    typer.echo(job_id)
    err.print(escape(f"queued job {job_id} ({job_spec.name}) in {store.url}"))


@app.command()
def status(
    job: Annotated[int | None, typer.Argument(metavar="[JOB]", help="A job id for details.")] = None,
    db: DbOption = None,
) -> None:
    """The jobs in the database, or one job's details."""
    store = _store(db)
    if job is None:
        _print_jobs(store.job_summaries())
    else:
        store.get_job(job)  # NotFoundError before an empty summary
        _print_job(store.job_summaries([job])[0], store)


def _state_text(record: Any) -> str:
    if record.state == "running" and record.cancel_requested:
        return "running (cancelling)"
    return str(record.state)


def _print_jobs(summaries: list[Any]) -> None:
    if not summaries:
        err.print("no jobs yet: `autoprune submit JOB.yaml` queues one")
        return
    table = Table(title="jobs")
    table.add_column("id", justify="right")
    table.add_column("name", overflow="fold")
    table.add_column("state")
    table.add_column("done/failed/all", justify="right")
    table.add_column("best", justify="right")
    table.add_column("created (UTC)", no_wrap=True)
    for summary in summaries:
        best = _number(summary.best_metric)
        if best and summary.metric_name:
            best = f"{best} {summary.metric_name}"
        table.add_row(
            str(summary.job.id), escape(summary.job.name), _state_text(summary.job),
            f"{summary.counts.get('complete', 0)}/{summary.counts.get('failed', 0)}/{summary.total}",
            best, _time(summary.job.created_at, seconds=False),
        )
    _out().print(table)


def _print_job(summary: Any, store: Any) -> None:
    job = summary.job
    spec = json.loads(job.spec_json)
    table = Table(show_header=False, title=f"job {job.id}")
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("name", job.name),
        ("state", _state_text(job)),
        ("owner", job.owner or ""),
        ("heartbeat", _time(job.heartbeat_at)),
        ("created", _time(job.created_at)),
        ("started", _time(job.started_at)),
        ("finished", _time(job.finished_at)),
        ("reason", job.reason or ""),
        ("model", str(spec.get("model", ""))),
        ("task", str((spec.get("task") or {}).get("name", ""))),
        ("controller", _controller_text(spec.get("controller") or {})),
        ("budget", _budget_text(spec.get("latency") or {})),
        ("trials", ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())) or "none"),
    ]
    if summary.best_metric is not None:
        best = max(store.trials(job.id, states=["complete"]),
                   key=lambda t: -float("inf") if t.metric_value is None else t.metric_value)
        rows.append(("best", f"trial {best.number}: {best.metric_name or 'metric'} "
                             f"{best.metric_value:.4f}, predicted "
                             f"{_number(best.predicted_latency_ms, 2)} ms"))
    for key, value in rows:
        if value:
            table.add_row(key, escape(value))
    _out().print(table)


def _controller_text(controller: dict[str, Any]) -> str:
    name = controller.get("name", "")
    evaluations = controller.get("evaluations")
    return f"{name}, {evaluations} evaluations" if evaluations else str(name)


def _budget_text(latency: dict[str, Any]) -> str:
    if latency.get("budget_ms") is not None:
        return f"{latency['budget_ms']} ms"
    if latency.get("budget_ratio") is not None:
        return f"{latency['budget_ratio']} x dense latency"
    return ""


@app.command()
def trials(
    job: JobArgument,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    db: DbOption = None,
) -> None:
    """Every trial of a job (csv/json carry every field, e.g. to plot elsewhere)."""
    from autoprune.front import TRIAL_EXTRA_FIELDS, trial_rows
    from autoprune.store import TrialRecord

    store = _store(db)
    records = store.trials(job)
    if format is Format.table:
        _print_trials(job, records)
        return
    rows = trial_rows(store.get_job(job), records)
    if format is Format.json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(_csv(rows, (*TrialRecord.__dataclass_fields__, *TRIAL_EXTRA_FIELDS)), nl=False)


def _csv(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # Nested values (a trial's ``extra``) as JSON, so a CSV reader gets them back intact.
        writer.writerow({key: json.dumps(value, sort_keys=True) if isinstance(value, (dict, list))
                         else value for key, value in row.items()})
    return buffer.getvalue()


def _print_trials(job: int, records: list[Any]) -> None:
    if not records:
        err.print(f"job {job} has no trials yet")
        return
    table = Table(title=f"trials of job {job}")
    columns = ("#", "state", "steps", "pred ms", "meas ms", "metric", "reward", "MB", "try",
               "arch", "error")
    for column in columns:
        table.add_column(column, justify="left" if column in ("state", "arch", "error") else "right")
    for t in records:
        table.add_row(
            str(t.number), t.state, "" if t.fidelity is None else str(t.fidelity),
            _number(t.predicted_latency_ms, 2), _number(t.measured_latency_ms, 2),
            _number(t.metric_value), _number(t.reward),
            "" if t.size_bytes is None else f"{t.size_bytes / 1e6:.1f}", str(t.attempt),
            escape(t.architecture_hash), escape((t.error or "")[:40]),
        )
    _out().print(table)


@app.command()
def cancel(job: JobArgument, db: DbOption = None) -> None:
    """Cancel a queued job, or ask a running job to stop after the trial in flight."""
    record = _store(db).request_cancel(job)
    if record.state == "cancelled":
        _out().print(f"job {job} cancelled")
    else:
        _out().print(f"job {job}: cancel requested; its runner stops after the trial in flight")


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate the database schema to the newest revision (idempotent)."""
    from autoprune.store import Store

    store = Store(db, migrate=False)
    before = store.revision
    after = store.upgrade()
    change = "already current" if before == after else f"upgraded from {before or 'empty'}"
    _out().print(escape(f"{store.url}: schema revision {after} ({change})"))


@app.command()
def profile(
    model: Annotated[str, typer.Option("--model", help="Alias, local dir or Hugging Face name.")],
    out_path: Annotated[Path, typer.Option("--out", help="The latency-model JSON to write.")],
    backend: Annotated[str, typer.Option("--backend", help="torch or onnxruntime.")] = "torch",
    batch: Annotated[int, typer.Option("--batch", min=1)] = 1,
    seq_len: Annotated[int, typer.Option("--seq-len", min=1)] = 128,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    space: Annotated[str, typer.Option("--space", help="Search space whose choices to table.")] = "bert-full",
    n_fit: Annotated[int, typer.Option("--n-fit", min=1,
                                       help="End-to-end measurements for the fit.")] = 100,
    time_budget: Annotated[float, typer.Option("--time-budget", min=1.0,
                                               help="Seconds of profiling at most.")] = 300.0,
    remeasure: Annotated[bool, typer.Option(
        "--remeasure", help="Measure everything again instead of reusing this device's "
                            "measurements from the database (the machine changed speed).")] = False,
    db: DbOption = None,
) -> None:
    """Measure this device and fit a latency model (operator tables + end-to-end correction).

    With a database (--db or AUTOPRUNE_DB) every measurement is stored, and a later profile of
    the same device measures only what is not stored yet, unless --remeasure."""
    from autoprune.latency import RichProgress, get_backend
    from autoprune.latency import profile as run_profile

    get_backend(backend)  # an unknown backend is a one-line error before any work
    store = _store(db) if db or os.environ.get("AUTOPRUNE_DB") else None
    with RichProgress() as bar:
        latency_model = run_profile(model, backend, batch, seq_len, threads, out_path,
                                    space=space, n_fit=n_fit, time_budget_s=time_budget,
                                    store=store, reuse_measurements=not remeasure, progress=bar)
    _print_latency_model(latency_model)


def _print_latency_model(latency_model: Any) -> None:
    info = latency_model.describe()
    table = Table(title=f"latency model {latency_model.path or ''}", show_header=False)
    for key, value in info.items():
        table.add_row(escape(str(key)), escape(json.dumps(value) if isinstance(value, (dict, list))
                                               else str(value)))
    _out().print(table)


@latency_app.command("validate")
def latency_validate(
    model_file: Annotated[Path, typer.Argument(metavar="LATENCY_MODEL.json")],
    n: Annotated[int, typer.Option("--n", min=1, help="Random architectures to measure.")] = 50,
    strict: Annotated[bool, typer.Option("--strict",
                                         help="A model from another device is an error.")] = False,
    save: Annotated[bool, typer.Option("--save", help="Write the figures into the file.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 1,
) -> None:
    """Measure fresh random architectures twice and compare with the model's predictions."""
    from autoprune.latency import LatencyModel, RichProgress, validate

    latency_model = LatencyModel.load(model_file, strict=strict)
    with RichProgress() as bar:
        record = validate(latency_model, n, seed=seed, strict=strict, save=save, progress=bar)
    table = Table(title=f"{model_file}: {record.n_heldout} held-out architectures")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("within ±10% of measured", f"{record.within_10pct:.1%}"),
        ("Kendall τ", f"{record.kendall_tau:.3f}"),
        (f"MAPE ({record.selected}, selected)", f"{record.mape:.1%}"),
        ("MAPE of the FLOPs-linear baseline", f"{record.flops_baseline_mape:.1%}"),
        ("MAPE of the operator table", f"{record.table_mape:.1%}"),
        ("two passes agree within ±10%", f"{record.repeatability_within_10pct:.1%}"),
        ("dense now / when profiled", ", ".join(f"{d:.2f}" for d in record.dense_drift)),
    ]
    margin = latency_model.with_document(validation=record).suggested_margin()
    if margin is not None:
        rows.append(("latency.margin: auto would hold back", f"{margin:.1%}"))
    for name, value in rows:
        table.add_row(escape(name), value)
    _out().print(table)


@app.command()
def search(
    spec: Annotated[Path, typer.Argument(metavar="JOB.yaml")],
    db: DbOption = None,
    executor: Annotated[ExecutorKind | None, typer.Option("--executor")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", metavar="ADDR")] = None,
    export_dir: Annotated[Path | None, typer.Option(
        "--export", metavar="DIR",
        help="Then export the best feasible trial to DIR (replacing an earlier export).")] = None,
    export_steps: Annotated[int | None, typer.Option(
        "--export-steps", min=1, metavar="S", help="Fine-tune the exported model to S steps.")] = None,
    verify_top: Annotated[int, typer.Option(
        "--verify", min=0, metavar="K",
        help="Before --export, measure the K best candidates here (`autoprune verify`) and "
             "export the best that fits (0: the best by prediction).")] = 0,
    max_drift: MaxDriftOption = DEFAULT_DRIFT_GUARD.max_drift,
    drift_attempts: DriftAttemptsOption = DEFAULT_DRIFT_GUARD.attempts,
) -> None:
    """Queue a job and run it at once in this process, then print its Pareto front."""
    from autoprune.runner.prepare import check_controller, check_margin_is_resolvable
    from autoprune.runner.service import HEARTBEAT_TIMEOUT_S, default_owner, run_job
    from autoprune.spec import JobSpec

    guard = DriftGuard(max_drift=max_drift, attempts=drift_attempts)  # bad values fail first
    job_spec = JobSpec.load(spec)
    check_controller(job_spec)
    check_margin_is_resolvable(job_spec)
    store = _store(db)
    job_id = store.create_job(job_spec.to_json(), job_spec.name)
    owner = default_owner()
    store.claim_job(owner, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, job_id=job_id)
    err.print(escape(f"job {job_id} ({job_spec.name}) in {store.url}"))
    with _search_progress(job_spec.controller.evaluations) as (on_progress, on_ready):
        run = run_job(store, job_id, owner, executor=executor.value if executor else None,
                      ray_address=ray_address, on_progress=on_progress, on_ready=on_ready,
                      quiet=True, progress=True)
    err.print(escape(f"job {job_id} {run.state}" + (f": {run.reason}" if run.reason else "")))
    _print_front(store, job_id, top=12)
    if export_dir is not None and run.state == "completed":
        if verify_top:
            _verify(store, job_id, verify_top, guard, VerifyFormat.table)
        number = _trial_number(store, job_id, "best")
        err.print(escape(f"exporting trial {number} to {export_dir}"))
        _export(store, job_id, number, export_dir, steps=export_steps, force=True,
                drift_guard=guard)


@contextmanager
def _search_progress(total: int) -> Iterator[tuple[Any, Any]]:
    """A Rich progress bar: trials done, best feasible metric, elapsed and remaining time.

    It appears once the job is prepared (``on_ready``): profiling and the teacher's fine-tune
    show their own bars first.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
        TextColumn("best feasible {task.fields[best]}"),
        TextColumn("infeasible skipped {task.fields[skipped]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err,
    )
    task = progress.add_task("search", total=total, best="-", skipped=0)

    def on_progress(state: Any) -> None:
        best = "-" if state.best_feasible is None else f"{state.best_feasible:.4f}"
        progress.update(task, completed=state.evaluated, best=best, skipped=state.infeasible)

    def on_ready(session: Any, runner: Any) -> None:
        runner.announce = lambda text: progress.console.print(escape(text))
        progress.start()

    try:
        yield on_progress, on_ready
    finally:
        progress.stop()


def _print_front(store: Any, job_id: int, top: int | None = None) -> None:
    from autoprune.front import front_report

    _print_front_report(front_report(store.get_job(job_id), store.trials(job_id)), top)


def _print_front_report(report: Any, top: int | None = None) -> None:
    """The front as a Rich table, or the trials closest to the budget when none meets it."""
    out = _out()
    if not report.rows:
        out.print(escape(report.no_metric_reason()))
        return
    shown = report.shown
    budget = "" if report.budget_ms is None else f", budget {report.budget_ms:.2f} ms"
    if report.any_feasible:
        title = f"job {report.job_id}: Pareto front ({len(shown)} of {len(report.rows)} trials){budget}"
    else:
        out.print(escape(report.no_feasible_reason()))
        title = f"job {report.job_id}: {len(shown)} trials closest to the budget{budget}"
    table = Table(title=escape(title))
    columns = ("trial", report.metric_name, "latency ms", "pred ms", "meas ms", "size MB", "steps",
               "feasible", "architecture")
    for column in columns:
        table.add_column(escape(column), justify="left" if column == "architecture" else "right")
    for row in shown[:top] if top else shown:
        table.add_row(str(row.number), f"{row.metric:.4f}", f"{row.latency_ms:.2f}",
                      _number(row.predicted_latency_ms, 2), _number(row.measured_latency_ms, 2),
                      _number(row.size_mb, 1), "" if row.fidelity is None else str(row.fidelity),
                      "yes" if row.feasible else "no", escape(row.architecture))
    out.print(table)
    if top and len(shown) > top:
        out.print(f"{top} of {len(shown)} shown: `autoprune pareto {report.job_id}` lists them all")
    best = report.best
    if best is None:
        out.print("no complete trial meets the budget")
    else:
        source = "measured" if best.measured_latency_ms is not None else "predicted"
        out.print(f"best feasible: trial {best.number}, {escape(report.metric_name)} {best.metric:.4f} "
                  f"at {best.latency_ms:.2f} ms ({source})")


@app.command()
def serve(
    db: DbOption = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", metavar="ADDR")] = None,
    once: Annotated[bool, typer.Option("--once", help="Run one job, then exit.")] = False,
    executor: Annotated[ExecutorKind | None,
                        typer.Option("--executor", help="Override the specs' executor.")] = None,
    poll: Annotated[float, typer.Option("--poll", min=0.1,
                                        help="Seconds between queue polls.")] = 2.0,
    heartbeat_timeout: Annotated[float, typer.Option(
        "--heartbeat-timeout", min=1.0,
        help="Resume running jobs whose heartbeat is this many seconds old.")] = 60.0,
) -> None:
    """The service: claim queued (or orphaned) jobs one at a time and run them."""
    from autoprune.runner.service import default_owner
    from autoprune.runner.service import serve as run_service

    store = _store(db)
    owner = default_owner()
    err.print(escape(f"autoprune serve {owner} on {store.url}"))

    def on_job(run: Any) -> None:
        err.print(escape(f"job {run.job_id} {run.state}" + (f": {run.reason}" if run.reason else "")))

    run_service(store, owner=owner, once=once, poll_interval=poll,
                heartbeat_timeout=heartbeat_timeout,
                executor=executor.value if executor else None, ray_address=ray_address,
                on_job=on_job)


@app.command()
def pareto(
    job: JobArgument,
    plot: Annotated[Path | None, typer.Option("--plot", metavar="FILE.png|FILE.html",
                                              help="Also draw every trial and the front.")] = None,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    db: DbOption = None,
) -> None:
    """A job's Pareto front (metric against latency), or the trials closest to the budget."""
    from autoprune.front import FRONT_FIELDS, front_report

    if plot is not None:
        from autoprune.plots import check_plot_path

        check_plot_path(plot)  # a bad file name is refused before the database is opened
    store = _store(db)
    report = front_report(store.get_job(job), store.trials(job))
    if format is Format.table:
        _print_front_report(report)
    else:
        # Notes go to stderr so that stdout stays machine-readable.
        if not report.rows:
            err.print(escape(report.no_metric_reason()))
        elif not report.any_feasible:
            err.print(escape(report.no_feasible_reason()))
        rows = [row.to_dict() for row in report.shown]
        if format is Format.json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            typer.echo(_csv(rows, FRONT_FIELDS), nl=False)
    if plot is not None:
        _plot_front(report, plot)


def _plot_front(report: Any, path: Path) -> None:
    from autoprune.plots import plot_front

    if not report.rows:
        err.print(escape(f"nothing to plot: {path} not written"))
        return
    title = f"job {report.job_id} ({report.job_name}): {report.metric_name} against latency"
    plot_front(report.rows, report.budget_ms, report.metric_name, path, title=title,
               latency_label=report.latency_label)
    err.print(escape(f"plot written to {path}"))


@app.command()
def verify(
    job: JobArgument,
    top: Annotated[int, typer.Option(
        "--top", metavar="K", help="How many of the best candidates within the budget to measure.")] = 5,
    margin: Annotated[float, typer.Option(
        "--margin", metavar="F",
        help="Fit only under the budget less this fraction: room for the measurement's noise.")] = 0.0,
    format: Annotated[VerifyFormat, typer.Option("--format", help="Output format.")] = VerifyFormat.table,
    max_drift: MaxDriftOption = DEFAULT_DRIFT_GUARD.max_drift,
    drift_attempts: DriftAttemptsOption = DEFAULT_DRIFT_GUARD.attempts,
    db: DbOption = None,
) -> None:
    """Measure a job's best candidates on this machine; the best that fits is the one to export.

    Each figure is stored on its trial as the re-measured latency, so `pareto` shows it and
    `export --trial best` picks the best candidate that measured within the budget."""
    guard = DriftGuard(max_drift=max_drift, attempts=drift_attempts)  # bad values fail first
    _verify(_store(db), job, top, guard, format, margin)


def _verify(store: Any, job: int, top: int, guard: DriftGuard, format: VerifyFormat,
            margin: float = 0.0) -> None:
    from contextlib import nullcontext

    from autoprune.latency import NullProgress, RichProgress
    from autoprune.verify import report_json
    from autoprune.verify import verify as verify_job

    # Bars only above a table: JSON on stdout stays machine-readable.
    bars = RichProgress(transient=True) if format is VerifyFormat.table else nullcontext(NullProgress())
    with bars as bar:
        report = verify_job(store, job, top, margin=margin, drift_guard=guard, progress=bar)
    if format is VerifyFormat.json:
        typer.echo(report_json(report), nl=False)
        return
    budget = "" if report.budget_ms is None else f", budget {report.budget_ms:.2f} ms"
    table = Table(title=escape(f"job {job}: {len(report.candidates)} candidates measured here{budget}"))
    for column in ("trial", "metric", "pred ms", "meas ms", "x dense", "error", "fits", "architecture"):
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for c in report.candidates:
        table.add_row(str(c.trial), f"{c.metric:.4f}", f"{c.predicted_latency_ms:.2f}",
                      f"{c.measured_latency_ms:.2f}", f"{c.ratio_to_dense:.3f}", f"{c.error:+.1%}",
                      "" if c.within_budget is None else ("yes" if c.within_budget else "no"),
                      escape(c.architecture))
    out = _out()
    out.print(table)
    for line in report.summary_lines():
        out.print(escape(line))


@app.command()
def export(
    job: JobArgument,
    trial: Annotated[str, typer.Option(
        "--trial", metavar="N|best", help="Trial number, or `best`: the best feasible trial.")],
    out_dir: Annotated[Path, typer.Option("--out", metavar="DIR")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Also write an ONNX model.")] = False,
    steps: Annotated[int | None, typer.Option(
        "--steps", min=1, metavar="S",
        help="Fine-tune further, to S steps in all (default: the steps the search ran).")] = None,
    force: Annotated[bool, typer.Option("--force",
                                        help="Replace a previous export in DIR.")] = False,
    confirm: Annotated[int, typer.Option(
        "--confirm", min=0, metavar="C",
        help="With --trial best: export the C best candidates within the budget to "
             "DIR/trial-N and keep the best export (DIR/best; DIR/confirm.json).")] = 0,
    max_drift: MaxDriftOption = DEFAULT_DRIFT_GUARD.max_drift,
    drift_attempts: DriftAttemptsOption = DEFAULT_DRIFT_GUARD.attempts,
    db: DbOption = None,
) -> None:
    """Write a trial's compressed model to a loadable directory, re-measured and re-scored."""
    guard = DriftGuard(max_drift=max_drift, attempts=drift_attempts)
    if confirm and trial.strip().lower() != "best":
        raise ExportError(f"--confirm {confirm}: chooses among the best candidates, so it "
                          f"needs --trial best (got --trial {trial})")
    store = _store(db)
    if confirm:
        from autoprune.confirm import confirm as confirm_job

        report = confirm_job(store, job, confirm, out_dir, steps=steps, force=force,
                             onnx=onnx, drift_guard=guard)
        for line in report.summary_lines():
            _out().print(escape(line))
        return
    _export(store, job, _trial_number(store, job, trial), out_dir, onnx=onnx, steps=steps,
            force=force, drift_guard=guard)


def _trial_number(store: Any, job: int, trial: str) -> int:
    if trial.strip().lower() == "best":
        from autoprune.front import front_report

        best = front_report(store.get_job(job), store.trials(job)).best
        if best is None:
            raise ExportError(f"job {job}: no complete trial meets the budget, so there is no best")
        return best.number
    try:
        return int(trial)
    except ValueError:
        raise ExportError(f"--trial {trial!r}: expected a trial number or `best`") from None


def _export(store: Any, job: int, number: int, out_dir: Path, *, onnx: bool = False,
            drift_guard: DriftGuard, steps: int | None = None, force: bool = False) -> None:
    from autoprune.export import export_trial

    report = export_trial(store, job, number, out_dir, onnx=onnx, steps=steps, force=force,
                          progress=True, drift_guard=drift_guard)
    for line in report.summary():
        _out().print(escape(line))


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  line: str | None = None) -> str:
    # A warning raised inside a validator points into pydantic's source; at the command line
    # the message is what helps, the location is noise.
    return f"warning: {message} ({category.__name__})\n"


def main() -> None:
    """The console script ``autoprune``."""
    warnings.formatwarning = _warning_line
    # Library progress bars (weights loading, shards) would tear through our Rich bars.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app(prog_name="autoprune")


if __name__ == "__main__":
    main()
