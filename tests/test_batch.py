"""Batches as a user meets them: grids, Dask workers, kill -9 and resume, a full disk, bad files, the report."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import small_mapping

from gpusim import __version__
from gpusim.batch import load_batch
from gpusim.batch.journal import Journal
from gpusim.cli import main
from gpusim.output.read import ResultsError, headline, open_results
from gpusim.scenario import ConfigError

EPOCH = "1767225600"  # SOURCE_DATE_EPOCH: the recorded start time, so separate runs give identical bytes

BATCH = {
    "base": "small.yaml",
    "paths": 300,
    "chunk_paths": 100,
    "save_paths": 5,
    "seed": 7,
    "scenarios": [{"name": "thin market", "set": {"secondary_market.price_impact.tight": 3.0}}],
    "grid": {"compute.deflation.tight": [0.3, 0.9], "compute.generations.H100.market_depth.tight": [5000, 500]},
}
N_SCENARIOS, N_UNITS = 5, 15


def _write_batch(folder: Path, **changes) -> Path:
    scenario = small_mapping()
    scenario["time"]["n_steps"] = 12
    (folder / "small.yaml").write_text(yaml.safe_dump(scenario))
    path = folder / "batch.yaml"
    path.write_text(yaml.safe_dump({**BATCH, **changes}, sort_keys=False))
    return path


def _batch(*args):
    return CliRunner().invoke(main, ["batch", *[str(a) for a in args], "--backend", "numpy", "--quiet"])


@pytest.fixture(autouse=True)
def _fixed_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The batch run once, uninterrupted, in this process's threads."""
    folder = tmp_path_factory.mktemp("reference")
    out = folder / "ref.h5"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        result = _batch(_write_batch(folder), "--out", out)
    assert result.exit_code == 0, result.output
    assert not list(folder.glob(".*")), "journal and temporary files are removed"
    return out


def test_batch_file_holds_every_scenario_in_the_run_layout(reference):
    xr = pytest.importorskip("xarray")
    with h5py.File(reference) as f:
        assert f.attrs["kind"] == "batch" and f.attrs["n_scenarios"] == N_SCENARIOS
        names = list(f["scenarios"])
        assert len(names) == N_SCENARIOS and "grid[deflation.tight=0.9,market_depth.tight=500]" in names
        group = f["scenarios/thin market"]
        assert group.attrs["n_paths"] == 300 and group.attrs["seed"] == 7 and "runtime_s" not in group.attrs
        assert group["outcomes/loss"].shape == (300, 1) and group["paths/crypto"].shape == (5, 13, 2)
    summary = xr.open_dataset(reference, group="scenarios/thin market/summary", engine="h5netcdf")
    outcomes = xr.open_dataset(reference, group="scenarios/thin market/outcomes", engine="h5netcdf")
    assert summary["pd"].dims == ("borrower", "step")
    assert float(summary["el"].sum()) == pytest.approx(float(outcomes["portfolio_loss"].mean()), rel=1e-9)
    # the Python API opens one scenario as it opens a single run
    results = open_results(reference).scenario("thin market")
    assert results.scenario.name == "thin market" and results.attrs["n_paths"] == 300
    assert headline(results)["portfolio"]["el"] == pytest.approx(float(summary["el"].sum()), rel=1e-12)
    with pytest.raises(ResultsError, match="no scenario 'winter' in this batch"):
        open_results(reference, scenario="winter")


def test_a_batch_scenario_equals_gpusim_run_of_the_same_scenario(reference, tmp_path):
    _write_batch(tmp_path)
    single = tmp_path / "single.h5"
    args = ["--paths", 300, "--chunk-paths", 100, "--seed", 7, "--save-paths", 5, "--workers", 1, "--backend", "numpy", "--quiet"]
    result = CliRunner().invoke(
        main,
        ["run", str(tmp_path / "small.yaml"), "--set", "secondary_market.price_impact.tight=3.0", *map(str, args), "--out", str(single)],
    )
    assert result.exit_code == 0, result.output
    run, scenario = open_results(single), open_results(reference, scenario="thin market")
    for name in ("pd", "el", "var", "es", "lgd", "risk_contribution", "breakeven_spread_bps"):
        np.testing.assert_array_equal(run.summary[name].values, scenario.summary[name].values, err_msg=name)
    np.testing.assert_array_equal(run.outcomes["loss"].values, scenario.outcomes["loss"].values)
    np.testing.assert_array_equal(run.paths["crypto"].values, scenario.paths["crypto"].values)


def test_batch_table_has_every_headline_metric(reference):
    batch = open_results(reference)
    t = batch.table
    assert batch.scenarios[:2] == ["thin market", "grid[deflation.tight=0.3,market_depth.tight=5000]"]
    for name in ("el", "el_se", "var_999", "var_999_se", "es_999", "es_999_se", "contagion_share", "el_without_chain"):
        assert t[name].dims == ("scenario",) and np.isfinite(t[name].values).all(), name
    assert t["pd_horizon"].dims == ("scenario", "borrower") and list(t["borrower"].values) == ["Neo"]
    with h5py.File(reference) as f:
        for i, name in enumerate(batch.scenarios):
            s = f["scenarios"][name]["summary"]
            assert t["el"].values[i] == s.attrs["portfolio_el"]
            assert t["es_999"].values[i] == s["es"][2] and t["var_999"].values[i] == s["var"][2]
            assert t["pd_horizon"].values[i, 0] == s["pd"][0, -1]
            assert t["contagion_share"].values[i] == s["contagion"].attrs["contagion_share_of_el"]
    # common random numbers: one seed, and the deeper deflation stress loses more on the same paths
    assert set(t["seed"].values) == {7}
    assert t["el"].values[3] > t["el"].values[1]
    assert "compute.deflation.tight=0.9" in str(t["overrides"].values[3])


def test_local_cluster_of_two_workers_equals_the_single_process_run_bitwise(reference, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "cluster.h5"
    result = _batch(_write_batch(tmp_path), "--out", out, "--workers", 2)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == reference.read_bytes()


def test_existing_scheduler_gives_the_same_file(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        out = tmp_path / "scheduler.h5"
        result = _batch(_write_batch(tmp_path), "--out", out, "--scheduler", cluster.scheduler_address)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == reference.read_bytes()


def _recorded(journal: Journal) -> int:
    """Units recorded so far, counting a finished scenario as all its units."""
    units = len(list(journal.units.glob("*.npz"))) if journal.units.exists() else 0
    scenarios = len(list(journal.scenarios.glob("s?????.h5"))) if journal.scenarios.exists() else 0
    return units + scenarios * (N_UNITS // N_SCENARIOS)


def test_kill_9_mid_batch_then_resume_equals_the_uninterrupted_run(reference, tmp_path):
    batch_file = _write_batch(tmp_path)
    out = tmp_path / "killed.h5"
    journal = Journal(out)
    cmd = [sys.executable, "-m", "gpusim", "batch", str(batch_file), "--out", str(out), "--backend", "numpy", "--quiet"]
    proc = subprocess.Popen(cmd, env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and _recorded(journal) < 5 and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the batch finished before it could be killed"
    done = _recorded(journal)
    assert 5 <= done < N_UNITS and not out.exists()

    refused = _batch(batch_file, "--out", out)
    assert refused.exit_code == 2 and "--resume" in refused.output
    resumed = _batch(batch_file, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == reference.read_bytes()
    assert not journal.root.exists()
    written = out.stat().st_mtime_ns
    again = _batch(batch_file, "--out", out, "--resume")
    assert again.exit_code == 0 and out.stat().st_mtime_ns == written, "a finished batch is not recomputed"


def test_interrupted_batch_refuses_to_resume_after_its_config_changed(reference, tmp_path, monkeypatch):
    import gpusim.batch.runner as runner

    batch_file = _write_batch(tmp_path)
    out = tmp_path / "b.h5"
    compute, calls = runner.compute_unit, []

    def interrupted_after_six(task):
        calls.append(task)
        if len(calls) > 6:
            raise KeyboardInterrupt
        return compute(task)

    monkeypatch.setattr(runner, "compute_unit", interrupted_after_six)
    stopped = _batch(batch_file, "--out", out)
    assert stopped.exit_code == 130 and "--resume" in stopped.output
    assert Journal(out).exists() and not out.exists()
    monkeypatch.setattr(runner, "compute_unit", compute)

    manifest_path = Journal(out).manifest_path
    manifest = manifest_path.read_text()
    manifest_path.write_text(manifest.replace(f'"gpusim_version": "{__version__}"', '"gpusim_version": "0.0.1"'))
    older = _batch(batch_file, "--out", out, "--resume")
    assert older.exit_code == 2 and "started by gpusim 0.0.1" in older.output
    manifest_path.write_text(manifest)

    _write_batch(tmp_path, paths=500, grid={"compute.deflation.tight": [0.3, 0.8]})
    refused = _batch(batch_file, "--out", out, "--resume")
    assert refused.exit_code == 2
    assert "changed since it was first started" in refused.output and "paths 300 -> 500" in refused.output
    assert "'grid[deflation.tight=0.8]' added" in refused.output
    assert Journal(out).exists(), "a refused resume keeps the recorded units"

    _write_batch(tmp_path)  # the original batch again: resume finishes it, once no other process holds the journal
    with open(Journal(out).root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        busy = _batch(batch_file, "--out", out, "--resume")
    assert busy.exit_code == 2 and "another `gpusim batch` is writing this output" in busy.output
    left_by_a_killed_assembly = tmp_path / ".b.h5.partial-999999"
    left_by_a_killed_assembly.write_bytes(b"half an HDF5 file")
    resumed = _batch(batch_file, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == reference.read_bytes()
    assert not left_by_a_killed_assembly.exists()


def test_full_disk_gives_a_clear_error_and_loses_no_recorded_unit(reference, tmp_path, monkeypatch):
    import gpusim.batch.journal as journal_module

    batch_file = _write_batch(tmp_path)
    out = tmp_path / "full.h5"
    write_npz, writes = journal_module._write_npz, []

    def disk_fills_up(*args, **kwargs):
        writes.append(1)
        if len(writes) > 9:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_npz(*args, **kwargs)

    monkeypatch.setattr(journal_module, "_write_npz", disk_fills_up)
    full = _batch(batch_file, "--out", out)
    assert full.exit_code == 2 and "Traceback" not in full.output
    assert "No space left on device" in full.output and "rerun with --resume" in full.output
    assert _recorded(Journal(out)) == 9 and not out.exists()
    assert not list(Journal(out).units.glob("*.tmp"))

    monkeypatch.setattr(journal_module, "_write_npz", write_npz)
    resumed = _batch(batch_file, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == reference.read_bytes()


def test_full_disk_while_assembling_the_output_keeps_every_scenario(reference, tmp_path, monkeypatch):
    import gpusim.batch.assemble as output

    batch_file = _write_batch(tmp_path)
    out = tmp_path / "assembly.h5"
    copy_run, copies = output.copy_run, []

    def disk_fills_up(*args):
        copies.append(1)
        if len(copies) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return copy_run(*args)

    monkeypatch.setattr(output, "copy_run", disk_fills_up)
    full = _batch(batch_file, "--out", out)
    assert full.exit_code == 2 and "No space left on device" in full.output and "rerun with --resume" in full.output
    assert not out.exists() and not list(tmp_path.glob(".assembly.h5.partial-*"))
    assert _recorded(Journal(out)) == N_UNITS

    monkeypatch.setattr(output, "copy_run", copy_run)
    resumed = _batch(batch_file, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grid": {"compute.deflaton.tight": [0.5]}}, "compute.deflaton: unknown field"),
        ({"grid": {"compute.deflation.tight": []}}, "grid.compute.deflation.tight: empty list of values"),
        ({"scenarios": [{"name": "x", "config": "crypto_wintr"}]}, "scenarios[0].config: crypto_wintr: no such config file"),
        ({"scenarios": [{"name": "a"}, {"name": "a"}]}, "scenarios[1].name: duplicate scenario name 'a'"),
        ({"scenarios": [{"name": "a/b"}]}, "may not contain '/'"),
        ({"paths": 0}, "paths: Input should be greater than or equal to 1"),
        ({"scenarios": [], "grid": {}}, "no scenarios"),
        ({"sed": 3}, "sed: unknown field"),
        ({"set": {"time.n_steps": "many"}}, "time.n_steps"),
    ],
)
def test_bad_batch_files_exit_2_naming_the_field(changes, message, tmp_path):
    result = _batch(_write_batch(tmp_path, **changes), "--out", tmp_path / "o.h5")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.h5").exists() and not Journal(tmp_path / "o.h5").root.exists()


def test_workers_and_scheduler_together_is_a_usage_error(tmp_path):
    result = _batch(_write_batch(tmp_path), "--out", tmp_path / "o.h5", "--workers", 2, "--scheduler", "tcp://127.0.0.1:1")
    assert result.exit_code == 2 and "not both" in result.output
    assert not Journal(tmp_path / "o.h5").root.exists(), "nothing to resume was left behind"


def test_shipped_overnight_batch_resolves():
    batch = load_batch("overnight_batch")
    names = [s.name for s in batch.scenarios]
    assert names[:6] == ["baseline", "crypto_winter", "deflation_shock", "rubin_early", "market_freeze", "perfect_storm"]
    assert len(names) == 6 + 27 and len(set(names)) == len(names)
    assert {s.seed for s in batch.scenarios} == {batch.spec.seed}
    with pytest.raises(ConfigError, match="not a shipped batch"):
        load_batch("overnight")


def test_report_renders_a_batch_comparison_page(reference, tmp_path):
    result = CliRunner().invoke(main, ["report", str(reference), "--out", str(tmp_path / "batch.html"), "--quiet"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "batch.html").read_text()
    assert "gpusim batch report" in page and "thin market" in page and "ES 99.9 %" in page
    assert '<figure id="chart-batch-el-es"><img src="data:image/svg+xml;base64,' in page
    inspect = CliRunner().invoke(main, ["inspect", str(reference)])
    assert inspect.exit_code == 2 and "a batch of 5 scenarios" in inspect.output
