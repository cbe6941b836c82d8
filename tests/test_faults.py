"""Outputs and the command line under faults and bad input: nothing lost, nothing silently wrong.

Each test is one attack a user or the machine can make: a full disk, an output path that
already holds something, a killed run's leftovers, absurd or garbled config values, a
damaged result file, Ctrl-C, and options out of range. Everything runs the small scenario
of conftest.py with a few thousand paths at most.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import small_mapping

from gpusim import runs
from gpusim.cli import main
from gpusim.scenario import shipped_scenarios
from gpusim.scenario.loading import load_raw, resolve_path
from gpusim.scenario.schema import Strict

DISK_KB = 256
"""Size of the small file system a full-disk test writes to; a 2,000-path run needs about 340 KB."""


@pytest.fixture
def small_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_mapping()))
    return path


@pytest.fixture
def small_batch(tmp_path: Path, small_yaml: Path) -> Path:
    path = tmp_path / "two.yaml"
    spec = {
        "base": str(small_yaml),
        "paths": 1000,
        "chunk_paths": 250,
        "save_paths": 20,
        "scenarios": [{"name": "a"}, {"name": "b", "set": {"power.vol": 0.3}}],
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def _invoke(*args: object, **env: str):
    return CliRunner().invoke(main, [str(a) for a in args], env=env or None)


def _one_error_line(text: str) -> str:
    """The single line a user error prints: no traceback, no h5py noise."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: ") and "Traceback" not in text
    return lines[0]


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial-" in p.name]


# ---------------------------------------------------------------------------------------
# a full disk: a small tmpfs where this machine lets the test mount one, else a file-size limit


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; the file-size-limit variant covers this machine")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_KB}k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the file-size-limit variant covers this machine")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


LIMITED_GPUSIM = """
import resource, runpy, signal, sys
limit = int(sys.argv.pop(1))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
runpy.run_module("gpusim", run_name="__main__")
"""


def _limited_gpusim(args: list[object], limit_bytes: int) -> subprocess.CompletedProcess[str]:
    """gpusim in a process that may not write a file larger than `limit_bytes` (as a full disk would refuse)."""
    cmd = [sys.executable, "-c", LIMITED_GPUSIM, str(limit_bytes), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["run", "batch"])
def test_a_full_tmpfs_fails_in_one_line_and_frees_the_space(command, small_disk, small_yaml, small_batch):
    out = small_disk / "out.h5"
    args = ["run", small_yaml, "--paths", 2000, "--save-paths", 100] if command == "run" else ["batch", small_batch]
    result = _invoke(*args, "--out", out, "--quiet")
    assert result.exit_code == 2, result.output
    assert "No space left on device" in _one_error_line(result.output)
    assert not out.exists() and not _leftovers(small_disk)
    if command == "run":  # the space is free again while this process still runs
        assert shutil.disk_usage(small_disk).used < 16 * 1024


@pytest.mark.parametrize("command", ["run", "batch"])
def test_a_file_size_limit_fails_in_one_line_without_a_crash(command, tmp_path, small_yaml, small_batch):
    out = tmp_path / "out.h5"
    args = ["run", small_yaml, "--paths", 2000, "--save-paths", 100] if command == "run" else ["batch", small_batch]
    done = _limited_gpusim([*args, "--out", out, "--quiet"], 200_000)
    assert done.returncode == 2, done.stderr  # not 1 with chained tracebacks, not 139 from a crash at exit
    assert "File too large" in _one_error_line(done.stderr)
    assert not out.exists() and not _leftovers(tmp_path)


# ---------------------------------------------------------------------------------------
# --out that already holds something


def test_an_existing_output_is_refused_unless_overwrite(small_yaml, tmp_path):
    out = tmp_path / "o.h5"
    out.write_text("an earlier result")
    refused = _invoke("run", small_yaml, "--paths", 200, "--out", out, "--quiet")
    assert refused.exit_code == 2 and "already exists; pass --overwrite" in _one_error_line(refused.output)
    assert out.read_text() == "an earlier result"
    replaced = _invoke("run", small_yaml, "--paths", 200, "--out", out, "--quiet", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert h5py.is_hdf5(out)


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_link_or_fifo_is_never_replaced(kind, small_yaml, tmp_path):
    target = tmp_path / "elsewhere.h5"
    target.write_text("not ours")
    out = tmp_path / "o.h5"
    if kind == "symlink":
        out.symlink_to(target)
    else:
        os.mkfifo(out)
    for extra in ([], ["--overwrite"]):
        result = _invoke("run", small_yaml, "--paths", 200, "--out", out, "--quiet", *extra)
        assert result.exit_code == 2, result.output
        assert "gpusim never replaces" in _one_error_line(result.output)
    assert out.is_symlink() if kind == "symlink" else not out.is_file()
    assert target.read_text() == "not ours"


def test_batch_and_report_refuse_to_replace_too(small_yaml, small_batch, tmp_path):
    out = tmp_path / "b.h5"
    out.write_text("an earlier batch")
    refused = _invoke("batch", small_batch, "--out", out, "--quiet")
    assert refused.exit_code == 2 and "already exists" in _one_error_line(refused.output)
    assert out.read_text() == "an earlier batch"
    run = tmp_path / "r.h5"
    assert _invoke("run", small_yaml, "--paths", 200, "--out", run, "--quiet", "--no-contagion").exit_code == 0
    page = tmp_path / "report.html"
    page.write_text("an earlier report")
    refused = _invoke("report", run, "--out", page, "--quiet")
    assert refused.exit_code == 2 and "already exists; pass --overwrite" in _one_error_line(refused.output)
    assert page.read_text() == "an earlier report"
    link = tmp_path / "report-link.html"
    link.symlink_to(page)
    assert _invoke("report", run, "--out", link, "--overwrite", "--quiet").exit_code == 2
    assert _invoke("report", run, "--out", tmp_path, "--overwrite", "--quiet").exit_code == 2  # a folder is never replaced
    memo = tmp_path / "memo.html"
    memo.with_suffix(".pdf").write_text("an earlier pdf")
    refused = _invoke("report", run, "--out", memo, "--pdf", "--quiet")  # the PDF beside the page is checked before anything
    assert refused.exit_code == 2 and "memo.pdf: already exists" in _one_error_line(refused.output)
    assert not memo.exists() and memo.with_suffix(".pdf").read_text() == "an earlier pdf"
    assert _invoke("report", run, "--out", page, "--overwrite", "--quiet").exit_code == 0
    assert page.read_text().startswith("<!DOCTYPE html>") and link.is_symlink()
    assert not list(tmp_path.glob(".report.html.partial-*"))


def test_an_empty_out_is_a_clear_error(small_yaml):
    result = _invoke("run", small_yaml, "--out", "", "--quiet")
    assert result.exit_code == 2
    assert "--out" in result.output and "is empty; give a file name" in result.output and "PosixPath" not in result.output


# ---------------------------------------------------------------------------------------
# what a killed run leaves


def test_partials_of_dead_runs_are_removed_by_the_next_run(small_yaml, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".o.h5.partial-{dead.pid}"
    stale.write_bytes(b"\0" * 4096)
    live = tmp_path / f".o.h5.partial-{os.getppid()}"  # a process that still runs: its file is left alone
    live.write_bytes(b"\0")
    assert _invoke("run", small_yaml, "--paths", 200, "--out", tmp_path / "o.h5", "--quiet").exit_code == 0
    assert not stale.exists() and live.exists()


# ---------------------------------------------------------------------------------------
# config values: finite, in range, any YAML float spelling, short messages in the file's terms


@pytest.mark.parametrize(
    ("setting", "field", "says"),
    [
        ("crypto.assets.BTC.drift=.nan", "crypto.assets[0].drift.easy", "finite number"),
        ("crypto.assets.BTC.spot=.inf", "crypto.assets[0].spot", "finite number"),
        ("crypto.assets.BTC.jump_mean=.inf", "crypto.assets[0].jump_mean.easy", "finite number"),
        ("crypto.assets.BTC.spot=1e308", "crypto.assets[0].spot", "less than or equal to"),
        ("crypto.assets.BTC.vol={easy: -.inf, tight: 0.5}", "crypto.assets[0].vol.easy", "finite number"),
        ("borrowers.Neo.debt.Neo-DDTL.principal=1e300", "borrowers[0].debt[0].principal", "less than or equal to"),
    ],
)
def test_non_finite_and_absurd_numbers_are_refused_naming_the_field(small_yaml, setting, field, says):
    result = _invoke("validate", small_yaml, "--set", setting)
    assert result.exit_code == 2, result.output
    assert any(field in line and says in line for line in result.output.splitlines()), result.output
    assert "Traceback" not in result.output and "RuntimeWarning" not in result.output


def test_any_yaml_float_spelling_is_a_number(tmp_path):
    """YAML 1.2 floats everywhere, including the single number that sets both regimes (PyYAML
    alone reads `5e-1` as a string, which the easy/tight shorthand refused)."""
    data = small_mapping()
    btc, eth = data["crypto"]["assets"]
    btc["vol"], btc["spot"], eth["jump_rate"] = "@VOL@", "@SPOT@", "@JUMPS@"
    text = yaml.safe_dump(data).replace("'@VOL@'", "5e-1").replace("'@SPOT@'", "9E+4").replace("'@JUMPS@'", "1.0e1")
    path = tmp_path / "spelled.yaml"
    path.write_text(text)
    result = _invoke("validate", path, "--set", "power.vol=2e-1")
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.output)
    btc, eth = resolved["crypto"]["assets"]
    assert btc["vol"] == {"easy": 0.5, "tight": 0.5} and btc["spot"] == 90000.0
    assert eth["jump_rate"] == {"easy": 10.0, "tight": 10.0} and resolved["power"]["vol"] == 0.2


INTERNAL_NAMES = ("ByRegime", "Annotated", "FieldInfo", "dictionary or instance", *(c.__name__ for c in Strict.__subclasses__()))


@pytest.mark.parametrize(
    "setting",
    ["crypto.assets.BTC.vol=[1, 2]", "crypto.assets.BTC=3", "power=fast", "compute.shock.corr_btc=high", "rates.base_curve=7"],
)
def test_messages_never_show_an_internal_type_name(small_yaml, setting):
    result = _invoke("validate", small_yaml, "--set", setting)
    assert result.exit_code == 2
    for name in INTERNAL_NAMES:
        assert name not in result.output, result.output


def test_a_yaml_alias_bomb_gives_short_messages(tmp_path):
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for level in range(1, 9):
        previous, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    data = yaml.safe_dump(small_mapping())
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n" + data.replace("spot: 90000.0", "spot: *i"))
    started = time.perf_counter()
    result = _invoke("validate", path)
    assert result.exit_code == 2 and time.perf_counter() - started < 10
    assert len(result.output) < 10_000
    assert all(len(line) < 300 for line in result.output.splitlines())
    assert "crypto.assets[0].spot" in result.output


@pytest.mark.parametrize("garbage", [bytes(range(256)) * 4, b"name: x\n\x00\x01\x02 binary\n"])
def test_binary_garbage_names_the_file(tmp_path, garbage):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(garbage)
    result = _invoke("validate", path)
    assert result.exit_code == 2
    line = _one_error_line(result.output)
    assert str(path) in line and "not a YAML text file" in line and "codec" not in line


def test_a_missing_extends_target_names_the_file_that_refers_to_it(tmp_path):
    stress = tmp_path / "stress.yaml"
    stress.write_text("extends: gone.yaml\npower: {vol: 0.4}\n")
    result = _invoke("validate", stress)
    assert result.exit_code == 2
    line = _one_error_line(result.output)
    assert line.startswith(f"error: {stress}: extends: gone.yaml: no such config file")


def test_schema_matches_what_validate_accepts():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(_invoke("schema").output)
    validator = jsonschema.Draft202012Validator(schema)

    def plain(data: object) -> object:  # as a JSON file holds it: dates are strings
        return json.loads(json.dumps(data, default=str))

    for name in shipped_scenarios():
        errors = [e.message for e in validator.iter_errors(plain(load_raw(resolve_path(name))))]
        assert not errors, f"{name}: {errors[:3]}"
    small = small_mapping()
    assert small["crypto"]["assets"][1]["drift"] == 0.10  # the single-number shorthand for both regimes
    assert validator.is_valid(plain(small))
    small["crypto"]["assets"][0]["vol"] = 0.5
    assert validator.is_valid(plain(small)) and _validates(small)
    for path, bad in (
        (("crypto", "assets", 0, "spot"), 1e308),
        (("crypto", "assets", 0, "vol"), {"easy": -0.1, "tight": 0.5}),
        (("crypto", "assets", 0, "vol"), {"easy": 0.5}),
        (("crypto", "assets", 0, "vol"), [0.5, 0.6]),
        (("power", "vol"), "fast"),
        (("regime", "p_easy_to_tight"), 1.5),
    ):
        data = small_mapping()
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = bad
        assert not validator.is_valid(plain(data)) and not _validates(data), (path, bad)


def _validates(data: dict) -> bool:
    from gpusim.scenario import ConfigError, validate_mapping

    try:
        validate_mapping(data)
    except ConfigError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# damaged result files


def _damage(path: Path, dataset: str, n_bytes: int, seed: int = 0) -> None:
    """Overwrite the first `n_bytes` of a dataset's first stored chunk with random bytes (or flip one byte)."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    if n_bytes == 1:
        data[info.byte_offset] ^= 0xFF
    else:
        size = min(n_bytes, info.size)
        data[info.byte_offset : info.byte_offset + size] = np.random.default_rng(seed).bytes(size)
    path.write_bytes(bytes(data))


def test_every_numeric_dataset_carries_a_checksum(small_yaml, small_batch, tmp_path):
    run, batch = tmp_path / "r.h5", tmp_path / "b.h5"
    assert _invoke("run", small_yaml, "--paths", 300, "--out", run, "--quiet").exit_code == 0
    assert _invoke("batch", small_batch, "--out", batch, "--quiet").exit_code == 0
    for file in (run, batch):
        assert not _without_checksum(file), file.name


def _without_checksum(file: Path) -> list[str]:
    """Numeric datasets of `file` without Fletcher-32 (variable-length strings cannot take filters)."""
    found: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind != "O" and not obj.fletcher32:
            found.append(name)

    with h5py.File(file, "r") as f:
        f.visititems(visit)
    return found


def test_a_flipped_byte_is_caught_naming_the_dataset(small_yaml, tmp_path):
    out = tmp_path / "r.h5"
    assert _invoke("run", small_yaml, "--paths", 2000, "--out", out, "--quiet").exit_code == 0
    _damage(out, "summary/el", 1)
    for args in (["inspect", out], ["inspect", out, "--json"], ["report", out, "--out", tmp_path / "rep.html", "--quiet"]):
        result = _invoke(*args)
        assert result.exit_code == 2, result.output
        assert "dataset /summary/el fails its checksum" in _one_error_line(result.output)


def test_four_kilobytes_of_noise_in_the_outcomes_are_caught(small_yaml, tmp_path):
    out = tmp_path / "r.h5"
    assert _invoke("run", small_yaml, "--paths", 2000, "--out", out, "--quiet").exit_code == 0
    _damage(out, "outcomes/loss", 4096)
    result = _invoke("report", out, "--out", tmp_path / "rep.html", "--quiet")
    assert result.exit_code == 2, result.output
    assert "dataset /outcomes/loss fails its checksum" in _one_error_line(result.output)


# ---------------------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_stops_a_run_within_two_seconds(small_yaml, tmp_path):
    """A real SIGINT to a real process, in the middle of chunks of 240 steps (tens of seconds each
    when a chunk had to finish before the run could stop)."""
    out = tmp_path / "big.h5"
    cmd = [sys.executable, "-m", "gpusim", "run", str(small_yaml), "--paths", "400000", "--set", "time.n_steps=240", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".big.h5.partial-*")):
        time.sleep(0.05)
    time.sleep(1.5)  # chunks are in flight
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    latency = time.monotonic() - sent
    print(f"Ctrl-C latency {latency:.2f} s")
    assert proc.returncode == 130, err
    assert latency < 2.0, f"took {latency:.1f} s to stop"
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists() and not _leftovers(tmp_path)


BATCH_TRIALS = r"""
import json, os, random, signal, sys, threading, time
from gpusim.cli import main

batch, folder, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])


def once(out, delay):
    fired = threading.Event()

    def interrupt():
        fired.set()
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(delay, interrupt) if delay is not None else None
    started = time.monotonic()
    try:
        if timer is not None:
            timer.start()
        try:
            main(["batch", batch, "--out", out, "--quiet"], standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:
            code = type(exc).__name__
        finished = time.monotonic()
        if timer is not None:
            timer.cancel()
            timer.join()
    except KeyboardInterrupt:  # the signal came after the batch had returned: not a trial
        return None, 0.0
    return (code if fired.is_set() else None), finished - started


once(os.path.join(folder, "warm.h5"), None)  # imports and caches, so the next run times the batch alone
_, duration = once(os.path.join(folder, "clean.h5"), None)
rng = random.Random(20261201)
codes = []
for attempt in range(3 * trials):
    code, _ = once(os.path.join(folder, f"t{attempt}.h5"), rng.uniform(0.02, 0.95) * duration)
    if code is not None:  # the signal was sent while the batch ran
        codes.append(code)
    if len(codes) == trials:
        break
print(json.dumps({"duration": duration, "codes": codes}))
"""


def test_batch_interrupts_are_never_lost(small_yaml, tmp_path):
    """20 batches each interrupted at a random moment by a real SIGINT: every one exits 130."""
    tiny = tmp_path / "tiny.yaml"  # one scenario of four units: each trial takes well under a second
    tiny.write_text(
        yaml.safe_dump({"base": str(small_yaml), "paths": 400, "chunk_paths": 100, "save_paths": 10, "scenarios": [{"name": "a"}]})
    )
    done = subprocess.run([sys.executable, "-c", BATCH_TRIALS, str(tiny), str(tmp_path), "20"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"batch of {report['duration']:.2f} s: exit codes {report['codes']}")
    assert report["codes"] == [130] * 20, report
    assert not _leftovers(tmp_path)
    for finished in tmp_path.glob("t*.h5"):  # only a batch interrupted as it completed has its file, whole
        assert h5py.File(finished, "r").attrs["kind"] == "batch"


# ---------------------------------------------------------------------------------------
# up-front checks and output streams


@pytest.mark.parametrize(
    ("option", "value"), [("--workers", "0"), ("--workers", "-1"), ("--paths", "0"), ("--chunk-paths", "0"), ("--save-paths", "-1")]
)
def test_counts_are_checked_while_parsing(option, value, tmp_path):
    result = _invoke("run", "no-such-config.yaml", "--out", tmp_path / "o.h5", option, value)
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output and "no such config" not in result.output


def test_paths_may_be_written_in_scientific_notation(small_yaml, tmp_path):
    out = tmp_path / "o.h5"
    assert _invoke("run", small_yaml, "--paths", "2e2", "--out", out, "--quiet").exit_code == 0
    with h5py.File(out) as f:
        assert f.attrs["n_paths"] == 200


def test_a_large_run_prints_an_estimate_first(small_yaml, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "LARGE_RUN_PATHS", 300)
    result = _invoke("run", small_yaml, "--paths", 400, "--out", tmp_path / "o.h5")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stderr.splitlines() if line.startswith("estimate:"))
    assert "about" in line and "memory" in line and "output up to" in line and "free" in line


def test_a_large_run_whose_output_cannot_fit_is_refused_before_it_starts(small_yaml, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "LARGE_RUN_PATHS", 300)
    monkeypatch.setattr(runs, "free_bytes", lambda path: 10_000)

    def never(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr("gpusim.backends.numpy_backend.NumpyBackend.run_chunk", never)
    out = tmp_path / "o.h5"
    result = _invoke("run", small_yaml, "--paths", "1e6", "--out", out, "--quiet")
    assert result.exit_code == 2, result.output
    assert "the output needs up to" in _one_error_line(result.output)
    assert not out.exists() and not _leftovers(tmp_path)


def test_tables_go_to_stdout_at_full_width_and_logs_to_stderr(small_yaml, tmp_path):
    out = tmp_path / "o.h5"
    result = _invoke("run", small_yaml, "--paths", 300, "--out", out, COLUMNS="40")
    assert result.exit_code == 0, result.output
    assert "break-even bps" in result.stdout and "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) > 80
    assert "path-steps/s" in result.stderr and "path-steps/s" not in result.stdout
    assert "break-even" not in result.stderr


def test_run_and_batch_print_json(small_yaml, small_batch, tmp_path):
    run = _invoke("run", small_yaml, "--paths", 300, "--out", tmp_path / "r.h5", "--json")
    assert run.exit_code == 0, run.output
    numbers = json.loads(run.stdout)
    assert numbers["run"]["n_paths"] == 300 and numbers["instruments"][0]["name"] == "Neo-DDTL"
    batch = _invoke("batch", small_batch, "--out", tmp_path / "b.h5", "--json", "--quiet")
    assert batch.exit_code == 0, batch.output
    table = json.loads(batch.stdout)
    assert table["batch"]["n_scenarios"] == 2 and [s["name"] for s in table["scenarios"]] == ["a", "b"]
    assert set(table["scenarios"][0]["pd_horizon"]) == {"Neo"}


def test_an_unwritable_bench_json_is_refused_before_the_benchmark(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr("gpusim.bench.bench", never)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _invoke("bench", "--backends", "numpy", "--json", blocker / "bench.json")
    assert result.exit_code == 2, result.output
    assert "cannot write the JSON report" in _one_error_line(result.output)
