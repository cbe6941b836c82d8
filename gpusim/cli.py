"""Command line: `gpusim run | validate | schema | inspect | report | bench | batch | import | export |
sensitivities | reverse-stress | calibrate | backtest`. Thin: parse, call the engine or the module that owns
the command, report.

Errors a user can cause (bad config, missing file, unwritable or existing output) print one
line per problem to stderr and exit with code 2, without a traceback. Ctrl-C exits with 130
and leaves no output file. Tables and JSON go to stdout, at their full width whatever the
terminal; progress, estimates and logs go to stderr.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn

import click
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table

from gpusim.api import file_headline
from gpusim.backends import CHOICES, BackendUnavailable, to_stderr
from gpusim.backends.native_build import NativeBuildError
from gpusim.engine import RunResult, SimulationError, deferred_interrupts
from gpusim.output.read import BatchResults, ResultsError, batch_headline, open_results
from gpusim.output.write import OutputError
from gpusim.runs import prepare_run, run_to_file
from gpusim.scenario import ConfigError, Scenario, load_scenario, to_yaml
from gpusim.version import __version__

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

err_console = Console(stderr=True, soft_wrap=True)  # log lines stay whole in a log file

WIDEST_TABLE = 1000
"""Columns a table may take when measured for printing uncut."""


def show(renderable: RenderableType) -> None:
    """Print a table (or text) to stdout at its full width: never cut or squeezed to the terminal,
    so a pipe, a log file and a narrow window all get every column whole."""
    console = Console()
    needed = Measurement.get(console, console.options.update_width(WIDEST_TABLE), renderable).maximum
    if needed > console.width or not console.is_terminal:
        console = Console(width=max(needed, console.width))
    console.print(renderable)


class Count(click.IntRange):
    """A whole number in a range, also written as 1e6 or 1_000_000."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            try:
                number = float(text)
            except ValueError:
                number = None
            if number is not None and number.is_integer() and "e" in text.lower():
                value = int(number)
        return super().convert(value, param, ctx)


def _output_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An --out that names a file (an empty string would mean the current folder)."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; give a file name such as run.h5")
    return value


overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output file (never a link, FIFO or device).")
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the headline results as JSON to stdout (plain numbers, NaN as null)."
)


def _fail(lines: list[str], code: int = EXIT_USAGE) -> NoReturn:
    for line in lines:
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the exceptions users can cause into clean messages and exit codes."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            _fail(exc.problems)
        except (OutputError, BackendUnavailable, NativeBuildError, SimulationError, ResultsError) as exc:
            _fail([str(exc)])
        except ValueError as exc:
            _fail([str(exc)])
        except KeyboardInterrupt:
            click.echo("interrupted: stopped cleanly, no output file was written", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpusim")
def main() -> None:
    """Monte Carlo stress simulator for AI-infrastructure credit."""


override_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="FIELD.PATH=VALUE",
    help="Override a config field, e.g. --set crypto.assets.BTC.vol.tight=1.0 (repeatable).",
)


@main.command()
@click.argument("config")
@override_option
@user_errors
def validate(config: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG (a YAML file or a shipped scenario name) and print it resolved."""
    scenario = load_scenario(config, list(overrides))
    click.echo(to_yaml(scenario), nl=False)


@main.command()
def schema() -> None:
    """Print the JSON Schema of scenario files."""
    click.echo(json.dumps(Scenario.model_json_schema(), indent=2))


@main.command("run")
@click.argument("config")
@click.option(
    "--paths", "n_paths", type=Count(min=1), default=100_000, show_default=True, help="Number of Monte Carlo paths (e.g. 100000 or 1e6)."
)
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (64-bit); same seed, same paths on every backend.")
@click.option("--out", "out", type=click.Path(dir_okay=False), callback=_output_file, required=True, help="HDF5 file to write.")
@overwrite_option
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option(
    "--backend",
    type=click.Choice(list(CHOICES)),
    default="auto",
    show_default=True,
    help="auto: the fused CUDA kernels on a GPU, else JAX on a GPU, else native (the same kernels, host C++), else numpy.",
)
@click.option("--chunk-paths", type=Count(min=1), default=None, help="Paths per chunk (default: from free memory and the backend).")
@click.option("--save-paths", type=Count(min=0), default=1000, show_default=True, help="Store full factor paths for the first K paths.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Chunks in flight at once (default: CPU count for numpy, 2 on a GPU, 1 for native, whose OpenMP threads (OMP_NUM_THREADS, "
    "else every core) are shared among the chunks).",
)
@click.option(
    "--no-contagion",
    is_flag=True,
    help="Switch the fire-sale chain off (no other borrower's fire sale reaches a borrower) and skip the attribution pass "
    "that reruns the paths without it.",
)
@click.option("--quiet", is_flag=True, help="No progress bar, estimate or summary table (--json still prints).")
@json_option
@override_option
@user_errors
def run_command(
    config: str,
    n_paths: int,
    seed: int,
    out: str,
    overwrite: bool,
    dtype: str,
    backend: str,
    chunk_paths: int | None,
    save_paths: int,
    workers: int | None,
    no_contagion: bool,
    quiet: bool,
    as_json: bool,
    overrides: tuple[str, ...],
) -> None:
    """Simulate CONFIG and write the results to --out (an existing file only with --overwrite).

    A run of a million paths or more first prints an estimate of its time, memory and output
    size, and is refused when the output cannot fit on the disk.
    """
    scenario = load_scenario(config, list(overrides))
    spec, engine_backend = prepare_run(scenario, dtype, not no_contagion, backend, announce=None if quiet else to_stderr)
    if not quiet:
        chosen = " (chosen by --backend auto)" if backend == "auto" else ""
        err_console.print(f"backend {engine_backend.name} on {engine_backend.device}{chosen}")
    with deferred_interrupts() as interrupted:
        result = run_to_file(
            spec,
            engine_backend,
            out,
            n_paths,
            save_paths,
            overwrite=overwrite,
            announce=None if quiet else err_console.print,
            seed=seed,
            chunk_paths=chunk_paths,
            workers=workers,
            console=err_console,
            show_progress=not quiet,
        )
        if as_json:
            click.echo(json.dumps(file_headline(out), indent=2, allow_nan=False))
        elif not quiet:
            _print_inspect(file_headline(out))
        if not quiet:
            _print_rate(result, out)
    _exit_if_interrupted_at_the_end(interrupted, out)


def _exit_if_interrupted_at_the_end(interrupted: Any, out: str) -> None:
    """Ctrl-C pressed as the work completed is still an interrupt (exit 130), though the output is whole."""
    if interrupted.is_set():
        click.echo(f"interrupted as it finished: {out} is complete", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _print_rate(result: RunResult, out: str) -> None:
    err_console.print(
        f"{result.path_steps_per_second:,.0f} path-steps/s ({result.workers} threads, chunks of {result.chunk_paths:,}); wrote {out}"
    )


@main.command()
@click.argument("file", type=click.Path())
@json_option
@user_errors
def inspect(file: str, as_json: bool) -> None:
    """Show the run stored in FILE and its headline results (PD, EL, LGD, VaR/ES, spreads)."""
    if as_json:
        click.echo(json.dumps(file_headline(file), indent=2, allow_nan=False))
        return
    _print_inspect(file_headline(file))


def _money(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:,.1f}"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


PD_TYPE_COLUMNS = {"payment": "payment", "covenant": "covenant", "maturity": "maturity"}
"""Columns of the PD by type of default by the horizon (gpusim.risk.DEFAULT_TYPES), in printouts."""


def _pd_type_cells(split: dict[str, dict[str, float | None]] | None) -> list[str]:
    """`pd ± se` per type of default, or '-' in a file without them."""
    if split is None:
        return ["-"] * len(PD_TYPE_COLUMNS)
    return [f"{_share(split[kind]['pd'])} ± {_share(split[kind]['se'])}" for kind in PD_TYPE_COLUMNS]


def _print_inspect(numbers: dict[str, Any]) -> None:
    """`inspect`'s tables: the same content as its JSON, formatted for a reader."""
    facts = numbers["run"]
    run_table = Table(title=f"run: {facts['file']}", show_header=False)
    run_table.add_column("", style="bold")
    run_table.add_column("")
    rows = {
        "scenario": facts["scenario"],
        "seed": facts["seed"],
        "paths": f"{facts['n_paths']:,}",
        "steps": f"{facts['n_steps']} ({facts['horizon_years']:g} years)",
        "backend": facts["backend"],
        "device": facts["device"],
        "dtype": facts["dtype"],
        "runtime": f"{facts['runtime_s']:.2f} s",
        "created": facts["created_utc"],
        "written by": f"gpusim {facts['gpusim_version']} (format {facts['format_version']})",
    }
    for key, value in rows.items():
        run_table.add_row(key, str(value))
    show(run_table)
    if "factors" in numbers:
        factors = Table(title="market factors at the horizon (no borrowers in this run)")
        for column in ("factor", "component", "units", "5 %", "median", "95 %"):
            factors.add_column(column, justify="right" if column[0].isdigit() or column == "median" else "left", no_wrap=True)
        for f in numbers["factors"]:
            cells = ("-" if f[q] is None else f"{f[q]:,.4g}" for q in ("p05", "median", "p95"))
            factors.add_row(f["factor"], f["component"] or "", f["units"] or "", *cells)
        show(factors)
        return

    horizon = facts["horizon_years"]
    borrowers = Table(title="borrowers: cumulative probability of default")
    borrowers.add_column("borrower", no_wrap=True)
    borrowers.add_column("type", no_wrap=True)
    years = [key for key in numbers["borrowers"][0]["pd"] if float(key[:-1]) < horizon] if numbers["borrowers"] else []
    for key in years:
        borrowers.add_column(f"PD {key}", justify="right")
    borrowers.add_column(f"PD {horizon:g}y (horizon)", justify="right")
    borrowers.add_column("with a loss", justify="right")
    for kind in PD_TYPE_COLUMNS.values():
        borrowers.add_column(kind, justify="right")
    for b in numbers["borrowers"]:
        horizon_cell = f"{_share(b['pd_horizon'])} ± {_share(b['pd_horizon_se'])}"
        bearing = _share(b["pd_loss_bearing_horizon"])
        by_type = _pd_type_cells(b["pd_by_type"])
        borrowers.add_row(b["name"], b["type"], *(_share(b["pd"][key]) for key in years), horizon_cell, bearing, *by_type)
    show(borrowers)

    instruments = Table(title="instruments: expected loss (USD m, discounted) and spreads (bps a year)")
    for column in ("instrument", "borrower", "EL $m", "LGD", "break-even bps", "market bps", "gap bps"):
        instruments.add_column(column, justify="left" if column in ("instrument", "borrower") else "right", no_wrap=True)
    for i in numbers["instruments"]:
        breakeven, gap = i["breakeven_spread_bps"], i["spread_gap_bps"]
        instruments.add_row(
            i["name"],
            i["borrower"],
            f"{_money(i['el'])} ± {_money(i['el_se'])}",
            _share(i["lgd"]),
            "-" if breakeven is None else f"{breakeven:,.0f} ± {i['breakeven_spread_bps_se'] or 0:,.0f}",
            f"{i['market_spread_bps']:,.0f}",
            "-" if gap is None else f"[{'red' if gap < 0 else 'green'}]{gap:+,.0f}[/]",
        )
    show(instruments)

    portfolio = numbers["portfolio"]
    risk = Table(
        title="portfolio loss (USD m, discounted)", caption=f"expected loss {_money(portfolio['el'])} ± {_money(portfolio['el_se'])}"
    )
    for column in ("level", "VaR $m", "ES $m"):
        risk.add_column(column, justify="right")
    for row in portfolio["levels"]:
        risk.add_row(
            f"{row['level']:.1%}",
            f"{_money(row['var'])} ± {_money(row['var_se'])}",
            f"{_money(row['es'])} ± {_money(row['es_se'])}",
        )
    show(risk)
    _print_desk(numbers)
    contagion = numbers["contagion"]
    if contagion is None:
        show("fire-sale chain: no attribution in this run (run with --no-contagion or without borrowers)")
    else:
        show(
            f"fire-sale chain: {_share(contagion['share_of_el'])} of EL "
            f"(EL without the chain: USD {_money(contagion['portfolio_el_without_chain'])} m)"
        )


def _print_desk(numbers: dict[str, Any]) -> None:
    """The desk's tables (ratings, IFRS 9 / CECL, market reconciliation, tranches), where the run has per-path outcomes."""
    from gpusim.cli_desk import desk_tables

    if numbers.get("desk"):
        for table in desk_tables(numbers["desk"]):
            show(table)


@main.command()
@click.argument("file", type=click.Path())
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    callback=_output_file,
    required=True,
    help="The report: one self-contained HTML file, e.g. report.html.",
)
@click.option("--pdf", is_flag=True, help="Also write the same tables and charts as a PDF beside it (report.pdf).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report file (never a link, FIFO or folder).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def report(file: str, out: str, pdf: bool, overwrite: bool, quiet: bool) -> None:
    """One HTML page with the summary, tables and charts of the run or batch stored in FILE (and a PDF with --pdf)."""
    from gpusim.report import write_report  # matplotlib loads only for this command
    from gpusim.report.figures import check_report_path, pdf_path

    check_report_path(out, overwrite, pdf)  # refused before the file is read
    if _is_sensitivities(file):
        page = _sensitivities_report(file, out, overwrite, pdf, quiet)
        click.echo(f"wrote {page}")
        return
    page = write_report(open_results(file), out, overwrite, pdf=pdf, progress=not quiet)
    click.echo(f"wrote {page}" + (f" and {pdf_path(page)}" if pdf else ""))


EXIT_BACKENDS_DISAGREE = 1


@main.command("bench")
@click.option("--config", default="bench", show_default=True, help="Scenario to time (a YAML file or a shipped name).")
@click.option(
    "--backends",
    "backend_list",
    default="numpy,jax,cupy-array,cupy,native",
    show_default=True,
    help="Comma-separated backends; the first that runs is the reference the others are checked against.",
)
@click.option("--paths", "n_paths", type=Count(min=1), default=16384, show_default=True, help="Paths per run.")
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Timed runs per backend after the warm-up (medians are shown).",
)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option(
    "--workload",
    type=click.Choice(["model+attribution", "model", "factors"]),
    default="model+attribution",
    show_default=True,
    help="model+attribution: as `gpusim run`; model: --no-contagion; factors: the market alone.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--check-paths", type=Count(min=1), default=64, show_default=True, help="First paths compared between backends.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Chunks in flight (default: each backend's own).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), default=None, help="Also write the report as JSON to this file.")
@override_option
@user_errors
def bench_command(
    config: str,
    backend_list: str,
    n_paths: int,
    repeats: int,
    dtype: str,
    workload: str,
    seed: int,
    check_paths: int,
    workers: int | None,
    json_file: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Time the same workload on each backend, after checking that their first paths agree.

    Exits with 1 when a backend disagrees with the reference (its figures are withheld).
    """
    from gpusim import bench

    scenario = load_scenario(config, list(overrides))
    names = bench.parse_backends(backend_list)
    if json_file is not None:
        bench.check_json_path(json_file)  # before the benchmark spends its minutes
    report = bench.bench(scenario, names, n_paths, repeats, dtype, workload, seed, check_paths, workers)  # type: ignore[arg-type]
    console = Console()
    if not console.is_terminal:  # piped or captured: wide enough for every column
        console = Console(width=200)
    for line in bench.report_lines(report):
        console.print(line, highlight=False, markup=False)
    show(bench.report_table(report))
    for line in bench.untimed_lines(report):
        console.print(line, highlight=False, markup=False)
    if json_file is not None:
        try:
            with open(json_file, "w") as fh:
                fh.write(bench.to_json(report) + "\n")
        except OSError as exc:
            _fail([f"{json_file}: cannot write the JSON report ({exc.strerror})"])
        console.print(f"wrote {json_file}", highlight=False)
    if not report["ok"]:
        _fail(report["failures"], EXIT_BACKENDS_DISAGREE)


@main.command("batch")
@click.argument("batch_file", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    callback=_output_file,
    required=True,
    help="HDF5 file to write (every scenario plus /batch).",
)
@overwrite_option
@click.option(
    "--backend",
    type=click.Choice(list(CHOICES)),
    default="auto",
    show_default=True,
    help="auto: the best backend where each unit runs (a Dask worker picks its own).",
)
@click.option("--resume", is_flag=True, help="Finish a batch an earlier start left unfinished (safe to pass always).")
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Start a local Dask cluster of N worker processes (127.0.0.1 only)."
)
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Use an existing Dask cluster, e.g. tcp://10.0.0.5:8786.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary (--json still prints).")
@json_option
@user_errors
def batch_command(
    batch_file: str,
    out: str,
    overwrite: bool,
    backend: str,
    resume: bool,
    workers: int | None,
    scheduler: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run every scenario of BATCH_FILE (a grid and/or named stresses) into one file; resumable after a crash."""
    from gpusim.batch import journal_folder, load_batch, run_batch

    batch = load_batch(batch_file)
    with deferred_interrupts() as interrupted:
        try:
            done = run_batch(
                batch,
                out,
                backend=backend,
                resume=resume,
                overwrite=overwrite,
                workers=workers,
                scheduler=scheduler,
                console=err_console,
                show_progress=not quiet,
            )
        except KeyboardInterrupt:
            click.echo(f"interrupted: finished work units are kept in {journal_folder(out)}; rerun with --resume to finish", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if as_json:
            opened = open_results(out)
            assert isinstance(opened, BatchResults)
            click.echo(json.dumps(batch_headline(opened), indent=2, allow_nan=False))
        if not quiet and done.already_complete:
            err_console.print(f"{out} already holds this batch, complete ({done.n_scenarios} scenarios); nothing to do")
        elif not quiet:
            resumed = f", {done.units_resumed} recorded by an earlier start" if done.units_resumed else ""
            err_console.print(
                f"{done.n_scenarios} scenarios, {done.units_computed} of {done.n_units} work units computed now{resumed} "
                f"on {done.where} ({', '.join(sorted(done.backends)) or 'no new units'}) in {done.runtime_s:,.1f} s; wrote {out}"
            )
    _exit_if_interrupted_at_the_end(interrupted, out)


# ---------------------------------------------------------------------------------------
# Deal portfolios in spreadsheets (gpusim.scenario.spreadsheet, docs/deals.md)


@main.command("import")
@click.argument("source", type=click.Path())
@click.option(
    "--out", type=click.Path(dir_okay=False), callback=_output_file, required=True, help="Scenario YAML to write, e.g. portfolio.yaml."
)
@click.option(
    "--market",
    default="baseline",
    show_default=True,
    help="Scenario (a YAML file or a shipped name) whose market the portfolio extends; its own borrowers are replaced.",
)
@click.option("--fragment", is_flag=True, help="Write only the borrowers (no extends:), still checked against --market.")
@overwrite_option
@user_errors
def import_command(source: str, out: str, market: str, fragment: bool, overwrite: bool) -> None:
    """Read borrowers, fleets, tenants, treasury and debt from SOURCE (an .xlsx workbook, or a folder or .zip
    of CSV files) into a scenario that extends --market; every problem names its sheet, row and column."""
    from gpusim.scenario.spreadsheet import import_portfolio

    borrowers = import_portfolio(source, out, market, fragment, overwrite)
    instruments = sum(len(b.debt) for b in borrowers)
    click.echo(f"wrote {out}: {len(borrowers)} borrowers, {instruments} instruments" + ("" if fragment else f", on the market of {market}"))


@main.command("export")
@click.argument("config")
@click.option(
    "--out",
    type=click.Path(),
    callback=_output_file,
    required=True,
    help="deals.xlsx (a workbook), deals.zip (CSV files) or a folder (CSV files, one per sheet).",
)
@override_option
@overwrite_option
@user_errors
def export_command(config: str, out: str, overrides: tuple[str, ...], overwrite: bool) -> None:
    """Write the borrowers of CONFIG as a spreadsheet `gpusim import` reads back (the market stays in YAML)."""
    from gpusim.scenario.spreadsheet import export_portfolio

    scenario = load_scenario(config, list(overrides))
    written = export_portfolio(scenario.borrowers, out, overwrite)
    click.echo(f"wrote {written}: {len(scenario.borrowers)} borrowers")


# The analyst's commands: sensitivities and reverse stress (logic in gpusim.analysis)


@main.command("sensitivities")
@click.argument("config")
@click.option(
    "--params",
    "bumps",
    multiple=True,
    required=True,
    metavar="FIELD.PATH=LOW:HIGH",
    help="A field and its bumped values (or percentages of its base value, -10%:+10%); repeatable.",
)
@click.option(
    "--metric",
    type=click.Choice(["el", "pd", "breakeven", "var"]),
    default="el",
    show_default=True,
    help="Metric of the printed table and chart (the file holds all four).",
)
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.99, show_default=True, help="VaR level.")
@click.option("--paths", "n_paths", type=Count(min=1), default=2000, show_default=True, help="Paths per scenario.")
@click.option("--seed", type=int, default=1, show_default=True, help="The one seed of every scenario (common random numbers).")
@click.option(
    "--out", "out", type=click.Path(file_okay=False), required=True, help="Folder for the batch, its journal and sensitivities.h5."
)
@click.option("--resume", is_flag=True, help="Finish the batch of the bumps an earlier start left unfinished.")
@overwrite_option
@click.option("--backend", type=click.Choice(list(CHOICES)), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Start a local Dask cluster of N worker processes.")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Use an existing Dask cluster, e.g. tcp://10.0.0.5:8786.")
@click.option("--no-contagion", is_flag=True, help="Fire-sale chain off in every scenario.")
@click.option("--quiet", is_flag=True, help="No progress bar or table (--json still prints).")
@json_option
@override_option
@user_errors
def sensitivities_command(
    config: str,
    bumps: tuple[str, ...],
    metric: str,
    level: float,
    n_paths: int,
    seed: int,
    out: str,
    resume: bool,
    overwrite: bool,
    backend: str,
    workers: int | None,
    scheduler: str | None,
    no_contagion: bool,
    quiet: bool,
    as_json: bool,
    overrides: tuple[str, ...],
) -> None:
    """Bump each field of CONFIG to LOW and HIGH on common random numbers; central differences with paired errors.

    The bumps run as one batch (OUT/bumps.h5, resumable, on Dask with --workers or --scheduler);
    OUT/sensitivities.h5 holds every metric per instrument, borrower and the portfolio, and
    OUT/tornado.svg the chart of --metric. `gpusim report OUT/sensitivities.h5` builds the page.
    """
    from gpusim.analysis.sensitivities import run_sensitivities, sensitivity_headline
    from gpusim.report.analysis_page import save_figure, tornado_chart

    with deferred_interrupts() as interrupted:
        try:
            done = run_sensitivities(
                config,
                list(bumps),
                out,
                overrides=list(overrides),
                paths=n_paths,
                seed=seed,
                metric=metric,
                level=level,
                contagion=not no_contagion,
                backend=backend,
                resume=resume,
                overwrite=overwrite,
                workers=workers,
                scheduler=scheduler,
                console=err_console,
                show_progress=not quiet,
            )
        except KeyboardInterrupt:
            click.echo(f"interrupted: finished work units are kept beside {out}/bumps.h5; rerun with --resume to finish", err=True)
            sys.exit(EXIT_INTERRUPTED)
        headline = sensitivity_headline(done.result, metric)
        chart = save_figure(tornado_chart(headline.dataset, headline.variable, headline.title, 1e6, "USD m"), done.folder / "tornado.svg")
        if as_json:
            click.echo(json.dumps(headline.rows, indent=2, allow_nan=False))
        elif not quiet:
            show(_sensitivity_table(headline))
        if not quiet:
            err_console.print(f"wrote {done.batch_h5}, {done.result} and {chart}")
    _exit_if_interrupted_at_the_end(interrupted, str(done.result))


@main.command("reverse-stress")
@click.argument("config")
@click.option(
    "--target", "target", required=True, help="el>=50m | el[Instrument]>=X | pd[Borrower]@5y>=0.1 | breach[Instrument][@2y][>=p]."
)
@click.option("--over", "over", required=True, metavar="FIELD[,FIELD]", help="The fields the shock moves.")
@click.option("--direction", default=None, metavar="D[,D]", help="Per field, its move for a unit shock (default +1 each; -1 lowers it).")
@click.option("--absolute", is_flag=True, help="Add s x D to each field instead of scaling it by (1 + s x D).")
@click.option("--max-shock", type=click.FloatRange(min=0, min_open=True), default=0.9, show_default=True, help="Largest shock s tried.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=0.005, show_default=True, help="Precision of s.")
@click.option(
    "--slope-step",
    type=click.FloatRange(min=0, min_open=True),
    default=0.02,
    show_default=True,
    help="Half-width of the slope's difference.",
)
@click.option("--paths", "n_paths", type=Count(min=1), default=2000, show_default=True, help="Paths per evaluation.")
@click.option("--seed", type=int, default=1, show_default=True, help="The one seed of every evaluation (common random numbers).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None, help="Folder for reverse_stress.json and reverse_stress.svg.")
@click.option("--backend", type=click.Choice(list(CHOICES)), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Chunks in flight at once.")
@click.option("--no-contagion", is_flag=True, help="Fire-sale chain off.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary (--json still prints).")
@json_option
@override_option
@user_errors
def reverse_stress_command(
    config: str,
    target: str,
    over: str,
    direction: str | None,
    absolute: bool,
    max_shock: float,
    tolerance: float,
    slope_step: float,
    n_paths: int,
    seed: int,
    out: str | None,
    backend: str,
    workers: int | None,
    no_contagion: bool,
    quiet: bool,
    as_json: bool,
    overrides: tuple[str, ...],
) -> None:
    """The smallest shock along --over that makes --target reach its level, with its Monte Carlo error.

    Each evaluation runs CONFIG shocked, on the same seed; scipy's brentq finds the crossing, and
    the error is the metric's standard error at the crossing over the local slope.
    """
    from gpusim.analysis.reverse_stress import parse_target, reverse_stress, write_reverse_stress
    from gpusim.report.analysis_page import save_figure, search_chart

    parse_target(target)  # a grammar error exits before anything runs
    result = reverse_stress(
        config,
        target,
        over,
        direction=direction,
        relative=not absolute,
        overrides=list(overrides),
        max_shock=max_shock,
        tolerance=tolerance,
        slope_step=slope_step,
        paths=n_paths,
        seed=seed,
        contagion=not no_contagion,
        backend=backend,
        workers=workers,
        console=err_console,
        show_progress=not quiet,
    )
    headline = result.headline()
    written = []
    if out is not None:
        written.append(write_reverse_stress(out, headline))
        written.append(save_figure(search_chart(headline), f"{out}/reverse_stress.svg"))
    if as_json:
        click.echo(json.dumps(headline, indent=2, allow_nan=False))
    elif not quiet:
        show(_reverse_stress_summary(headline))
    if written and not quiet:
        err_console.print(f"wrote {', '.join(str(w) for w in written)}")


def _reverse_stress_summary(h: dict[str, Any]) -> RenderableType:
    if h["status"] == "at_base":
        return f"{h['metric']} already reaches {h['level']:.4g} without a shock"
    if h["status"] == "not_reached":
        last = h["evaluations"][-1]
        return f"{h['metric']} does not reach {h['level']:.4g} within a shock of {h['max_shock']:g} (it is {last['value']:.4g} there)"
    table = Table(title=f"reverse stress: {h['target']} ({h['metric']})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    lo, hi = h["shock_interval_95"] or (math.nan, math.nan)
    table.add_row("shock s", f"{h['shock']:.4f} ± {h['shock_se'] or math.nan:.4f} (95 %: {lo:.4f} to {hi:.4f})")
    for f, v in h["field_values"].items():
        table.add_row(f, json.dumps(v) if isinstance(v, dict) else f"{v:.6g}")
    table.add_row("slope at s", f"{h['slope']:.4g} ± {h['slope_se']:.2g} per unit of shock")
    table.add_row("runs", f"{len(h['evaluations'])} of {h['paths']:,} paths, seed {h['seed']}")
    return table


def _is_sensitivities(file: str) -> bool:
    from gpusim.output.sensitivities import is_sensitivities_file

    return is_sensitivities_file(file)


def _sensitivities_report(file: str, out: str, overwrite: bool, pdf: bool, quiet: bool) -> Any:
    """`gpusim report` on a sensitivities file: its own page (HTML only)."""
    from gpusim.output.sensitivities import open_sensitivities
    from gpusim.report.analysis_page import write_sensitivity_report

    if pdf:
        raise ValueError(f"{file}: --pdf is not available for a sensitivities file; its page is HTML only")
    return write_sensitivity_report(open_sensitivities(file), out, overwrite, progress=not quiet)


def _sensitivity_table(headline: Any) -> Table:
    """The rows of `gpusim sensitivities` for --metric: levels and differences in the metric's unit."""
    table = Table(title=f"{headline.title} ({headline.unit}): HIGH - LOW on common random numbers")
    for column in ("name", "field", "base", "LOW", "HIGH", "HIGH - LOW", "s.e. paired", "s.e. independent", "derivative"):
        table.add_column(column, justify="left" if column in ("name", "field") else "right", no_wrap=True)
    for row in headline.rows:
        cells = [row["name"], row["field"]]
        for key in headline.columns[2:]:
            value = row[key]
            if value is None:
                cells.append("-")
            elif key == "derivative":
                cells.append(f"{value:.4g}")
            else:
                cells.append(f"{value / headline.scale:,.2f}")
        table.add_row(*cells)
    return table


# ---------------------------------------------------------------------------------------
# calibrate and backtest: the market blocks fitted to data (gpusim.calibrate)


def _iso_date(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A YYYY-MM-DD option as a date."""
    if value is None:
        return None
    from datetime import date as Date

    try:
        return Date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _launch_dates(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(_iso_date(ctx, param, v) for v in values)


def _print_fits(fits: list[Any]) -> None:
    for fit in fits:
        table = Table(title=f"gpusim calibrate {fit.kind}: {fit.source}")
        for column in ("parameter", "value", "s.e.", "unit", "note"):
            table.add_column(column, justify="right" if column in ("value", "s.e.") else "left")
        for e in fit.estimates:
            table.add_row(e.path, f"{e.value:.5g}", f"{e.se:.3g}", e.unit, e.note)
        show(table)
        facts = Table(title="fit diagnostics", show_header=False)
        for name, value in fit.diagnostics.items():
            facts.add_row(name, f"{value:.6g}" if isinstance(value, float) else str(value))
        show(facts)


launch_option = click.option(
    "--launch",
    "launches",
    multiple=True,
    callback=_launch_dates,
    metavar="DATE",
    help="rental: the launch date of a newer generation that has no column (repeatable); each column's first date is a launch already.",
)
column_option = click.option(
    "--column", "columns", multiple=True, metavar="NAME", help="Fit only these value columns (repeatable; default every column after date)."
)
base_option = click.option(
    "--base", default="baseline", show_default=True, help="Scenario the fragment extends (a shipped name or a file, e.g. another fragment)."
)


@main.command("calibrate")
@click.argument("kind", type=click.Choice(["crypto", "rental", "hardware", "power"]))
@click.argument("data", type=click.Path())
@click.option(
    "--out", type=click.Path(dir_okay=False), callback=_output_file, default=None, help="Write the fitted parameters as a YAML fragment."
)
@click.option("--start", callback=_iso_date, default=None, metavar="DATE", help="Use data dated on or after this day.")
@click.option("--end", callback=_iso_date, default=None, metavar="DATE", help="Use data dated on or before this day.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None, help="Draw the fit plots (PNG) into this folder.")
@column_option
@launch_option
@base_option
@click.option(
    "--expected-deflation",
    type=click.FloatRange(min=0.0, max=5.0),
    default=0.25,
    show_default=True,
    help="hardware: the valuer's expected rent deflation dbar per year (compute.valuation.expected_deflation).",
)
@user_errors
def calibrate_command(
    kind: str,
    data: str,
    out: str | None,
    start: Any,
    end: Any,
    plot_dir: str | None,
    columns: tuple[str, ...],
    launches: tuple[Any, ...],
    base: str,
    expected_deflation: float,
) -> None:
    """Fit a market block (KIND) to DATA.csv: parameters with standard errors, a YAML fragment, fit plots (docs/calibration.md)."""
    import warnings

    from gpusim.calibrate import base_releases, calibrate, draw_plots
    from gpusim.calibrate.fragment import write_fragment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optimiser chatter; convergence is reported in the diagnostics
        fits = calibrate(kind, data, start, end, columns, launches, expected_deflation, releases=base_releases(base))
    _print_fits(fits)
    if out is not None:
        for note in write_fragment(fits, out, base, command=" ".join(sys.argv[1:])):
            err_console.print(note)
        err_console.print(f"wrote {out} (extends {base})")
    if plot_dir is not None:
        for path in draw_plots(fits, plot_dir):
            err_console.print(f"wrote {path}")


@main.command("backtest")
@click.argument("kind", type=click.Choice(["crypto", "rental"]))
@click.argument("data", type=click.Path())
@click.option("--cutoff", callback=_iso_date, required=True, metavar="DATE", help="Fit on data up to this day; score what came after.")
@click.option("--horizon-months", type=click.IntRange(1, 120), default=12, show_default=True, help="Months forecast from each origin.")
@click.option("--origins", type=click.IntRange(1, 120), default=12, show_default=True, help="Monthly forecast origins from the cut-off on.")
@click.option(
    "--paths", "n_paths", type=Count(min=100, max=1_000_000), default=2000, show_default=True, help="Simulated paths per forecast."
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--parameter-draws",
    "draws",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Mix this many parameter sets drawn from the estimates and their standard errors into each forecast (0: point estimates).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the charts and every scored point (CSV) into this folder.",
)
@column_option
@launch_option
@base_option
@user_errors
def backtest_command(
    kind: str,
    data: str,
    cutoff: Any,
    horizon_months: int,
    origins: int,
    n_paths: int,
    seed: int,
    draws: int,
    out_dir: str | None,
    columns: tuple[str, ...],
    launches: tuple[Any, ...],
    base: str,
) -> None:
    """Fit KIND on DATA.csv up to --cutoff, simulate forward with gpusim's model, score the realised values (coverage, PIT, CRPS)."""
    import warnings

    from gpusim.calibrate.backtest import backtest, draw_backtest, write_points

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = backtest(kind, data, cutoff, horizon_months, n_paths, origins, base, seed, columns, launches, draws)
    mix = f", {draws} parameter draws" if draws else ""
    for variable in [*bt.variables, None]:
        table = Table(title=f"backtest {kind} {variable or 'all variables'}: cut-off {cutoff}, {origins} origins, {n_paths} paths{mix}")
        for column in ("horizon", "points", "50 % band", "90 % band", "mean PIT", "CRPS (log)"):
            table.add_column(column, justify="right")
        for row in bt.summary(variable):
            table.add_row(
                row["horizon"],
                str(row["points"]),
                f"{row['coverage_50']:.0%}",
                f"{row['coverage_90']:.0%}",
                f"{row['mean_pit']:.2f}",
                f"{row['crps_log']:.4f}",
            )
        show(table)
        counts = bt.pit_histogram(variable)
        click.echo("PIT histogram (10 bins): " + " ".join(str(c) for c in counts))
    if out_dir is not None:
        for path in [*draw_backtest(bt, out_dir), write_points(bt, out_dir)]:
            err_console.print(f"wrote {path}")
