"""Command line: `gpusim run | validate | schema`. Thin: parse, call the engine, report.

Errors a user can cause (bad config, missing file, unwritable output) print one line per
problem to stderr and exit with code 2, without a traceback. Ctrl-C exits with 130 and
leaves no output file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from gpusim import __version__
from gpusim.backends import BACKENDS, BackendUnavailable, get_backend
from gpusim.config import ConfigError, Scenario, load_scenario, to_yaml
from gpusim.engine import SimulationError, run
from gpusim.io import OutputError, ResultWriter
from gpusim.spec import build_spec

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

err_console = Console(stderr=True)


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
        except (OutputError, BackendUnavailable, SimulationError) as exc:
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
@click.option("--paths", "n_paths", type=int, default=100_000, show_default=True, help="Number of Monte Carlo paths.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (64-bit); same seed, same paths on every backend.")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="HDF5 file to write.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="numpy", show_default=True)
@click.option("--chunk-paths", type=int, default=None, help="Paths per chunk (default: from free memory and the backend).")
@click.option("--save-paths", type=int, default=1000, show_default=True, help="Store full factor paths for the first K paths.")
@click.option("--workers", type=int, default=None, help="Threads running chunks (default: CPU count).")
@click.option("--quiet", is_flag=True, help="No progress bar or summary table.")
@override_option
@user_errors
def run_command(
    config: str,
    n_paths: int,
    seed: int,
    out: str,
    dtype: str,
    backend: str,
    chunk_paths: int | None,
    save_paths: int,
    workers: int | None,
    quiet: bool,
    overrides: tuple[str, ...],
) -> None:
    """Simulate CONFIG and write the results to --out."""
    scenario = load_scenario(config, list(overrides))
    if n_paths < 1:
        raise ValueError(f"--paths must be at least 1, got {n_paths}")
    if save_paths < 0:
        raise ValueError(f"--save-paths must be 0 or more, got {save_paths}")
    spec = build_spec(scenario, dtype)  # type: ignore[arg-type]
    engine_backend = get_backend(backend)
    with ResultWriter(out) as writer:
        writer.begin(spec, min(save_paths, n_paths), n_paths)
        result = run(
            spec,
            engine_backend,
            n_paths=n_paths,
            seed=seed,
            save_paths=save_paths,
            chunk_paths=chunk_paths,
            workers=workers,
            sink=writer,
            console=err_console,
            show_progress=not quiet,
        )
        writer.finish(result)
    if not quiet:
        _print_summary(result, out)


def _print_summary(result: Any, out: str) -> None:
    layout = result.spec.layout
    table = Table(
        title=f"{layout.scenario_name}: {result.n_paths:,} paths x {layout.n_steps} steps ({result.spec.dtype}, {result.backend})"
    )
    table.add_column("factor")
    table.add_column("at horizon: 5 %", justify="right")
    table.add_column("median", justify="right")
    table.add_column("95 %", justify="right")
    quantile_index = {q: i for i, q in enumerate((0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99))}
    for name, labels in (("crypto", layout.assets), ("rental_rate", layout.generations), ("gpu_mark", layout.generations)):
        values, _ = result.fan[name]
        for c, label in enumerate(labels):
            row = [f"{values[c, quantile_index[q], -1]:,.4g}" for q in (0.05, 0.5, 0.95)]
            table.add_row(f"{name} {label}", *row)
    err_console.print(table)
    err_console.print(
        f"runtime {result.runtime_s:.2f} s, {result.path_steps_per_second:,.0f} path-steps/s "
        f"({result.workers} threads, chunks of {result.chunk_paths:,}); wrote {out}"
    )
