"""PD by type of default (docs/model.md 8.2): payment default, covenant acceleration (DSCR + LTV)
and maturity default beside PD any and PD loss-bearing. By hand on a few paths in the streaming
summary; end to end, the split sums to PD any and matches the per-path reasons in the summary,
the HDF5 file, its reader, `gpusim inspect --json` and a file written before the summary had it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from test_collateral import collateral_mapping

from gpusim.api import open_results
from gpusim.cli import main
from gpusim.model.constants import DefaultReason
from gpusim.output.read import headline
from gpusim.risk import DEFAULT_TYPES, RiskAccumulator

P, D, L, M, N = (DefaultReason.PAYMENT, DefaultReason.COVENANT_DSCR, DefaultReason.COVENANT_LTV, DefaultReason.MATURITY, DefaultReason.NONE)


def test_pd_by_type_by_hand() -> None:
    """Two borrowers, five paths; reasons by hand. Borrower 0: payment on two paths, LTV on one;
    borrower 1: DSCR and LTV (both covenant), maturity on one. Chunking and merging change nothing."""
    step = np.array([[3, 1], [-1, 2], [0, -1], [5, 4], [1, 0]], dtype=np.int16)
    reason = np.array([[P, D], [N, L], [L, N], [P, M], [P, L]], dtype=np.int8)
    loss = np.zeros((5, 2))
    ead, annuity = np.zeros_like(loss), np.ones_like(loss)

    def accumulator() -> RiskAccumulator:
        return RiskAccumulator(2, 2, 8, expected_paths=5, instrument_borrower=[0, 1])

    whole, first, second = accumulator(), accumulator(), accumulator()
    whole.add(0, step, loss, ead, annuity, default_reason=reason)
    first.add(0, step[:2], loss[:2], ead[:2], annuity[:2], default_reason=reason[:2])
    second.add(2, step[2:], loss[2:], ead[2:], annuity[2:], default_reason=reason[2:])
    first.merge(second)
    expected = {"payment": [3 / 5, 0.0], "covenant": [1 / 5, 3 / 5], "maturity": [0.0, 1 / 5]}
    for summary in (whole.finalize(), first.finalize()):
        for kind, pd in expected.items():
            np.testing.assert_array_equal(summary[f"pd_{kind}"], pd)
            np.testing.assert_allclose(summary[f"pd_{kind}_se"], np.sqrt(np.array(pd) * (1 - np.array(pd)) / 5))
        total = sum(summary[f"pd_{kind}"] for kind in DEFAULT_TYPES)
        np.testing.assert_allclose(total, summary["pd"][:, -1], rtol=1e-15)


def test_reasons_must_match_the_defaults() -> None:
    acc = RiskAccumulator(1, 1, 4, expected_paths=4, instrument_borrower=[0])
    step, reason = np.array([[1], [-1]], dtype=np.int16), np.array([[N], [N]], dtype=np.int8)
    with pytest.raises(ValueError, match="NONE"):
        acc.add(0, step, np.zeros((2, 1)), np.zeros((2, 1)), np.ones((2, 1)), default_reason=reason)
    acc.add(0, step, np.zeros((2, 1)), np.zeros((2, 1)), np.ones((2, 1)), default_reason=np.array([[P], [N]], dtype=np.int8))
    with pytest.raises(ValueError, match="every chunk or with none"):
        acc.add(2, step, np.zeros((2, 1)), np.zeros((2, 1)), np.ones((2, 1)))


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small stressed scenario with data centres and distributions (defaults of every type), 600 paths."""
    folder = tmp_path_factory.mktemp("types")
    config = folder / "types.yaml"
    config.write_text(yaml.safe_dump(collateral_mapping()))
    out = folder / "types.h5"
    argv = ["run", str(config), "--paths", "600", "--seed", "7", "--save-paths", "0", "--backend", "numpy", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_pd_by_type_in_the_file_matches_the_per_path_reasons(run_file: Path) -> None:
    results = open_results(run_file)
    s, reason = results.summary, results.outcomes["default_reason"].values
    n = reason.shape[0]
    seen = set()
    for kind, codes in DEFAULT_TYPES.items():
        share = np.isin(reason, [c.value for c in codes]).mean(axis=0)
        np.testing.assert_allclose(s[f"pd_{kind}"].values, share, rtol=1e-15)
        np.testing.assert_allclose(s[f"pd_{kind}_se"].values, np.sqrt(share * (1 - share) / n), rtol=1e-12)
        seen |= {kind for p in share if p > 0}
    assert seen == set(DEFAULT_TYPES), "the case should see every type of default"
    total = sum(s[f"pd_{kind}"].values for kind in DEFAULT_TYPES)
    np.testing.assert_allclose(total, s["pd"].values[:, -1], rtol=1e-12)
    assert (s["pd_loss_bearing"].values <= s["pd"].values[:, -1] + 1e-15).all()
    table = results.borrowers()
    np.testing.assert_allclose(table["pd_covenant_share"], s["pd_covenant"].values)
    np.testing.assert_allclose(table["pd_covenant_share"], table["pd_covenant_dscr_share"] + table["pd_covenant_ltv_share"])


def test_inspect_json_reports_pd_by_type(run_file: Path) -> None:
    result = CliRunner().invoke(main, ["inspect", str(run_file), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    for b in numbers["borrowers"]:
        split = b["pd_by_type"]
        assert set(split) == set(DEFAULT_TYPES)
        assert sum(split[kind]["pd"] for kind in DEFAULT_TYPES) == pytest.approx(b["pd_horizon"], abs=1e-12)
    printed = CliRunner().invoke(main, ["inspect", str(run_file)], catch_exceptions=False).output
    assert "covenant" in printed and "maturity" in printed


def test_a_file_without_the_split_gets_it_from_the_outcomes(run_file: Path, tmp_path: Path) -> None:
    """A format-2 file written before the summary had pd_payment ... (deleted here) still shows the
    split, from its per-path reasons, with binomial standard errors."""
    old = tmp_path / "old.h5"
    old.write_bytes(run_file.read_bytes())
    with h5py.File(old, "a") as f:
        for kind in DEFAULT_TYPES:
            del f[f"summary/pd_{kind}"], f[f"summary/pd_{kind}_se"]
    fresh, before = headline(open_results(run_file)), headline(open_results(old))
    for new_row, old_row in zip(fresh["borrowers"], before["borrowers"], strict=True):
        for kind in DEFAULT_TYPES:
            assert old_row["pd_by_type"][kind]["pd"] == pytest.approx(new_row["pd_by_type"][kind]["pd"], abs=1e-15)
            p = old_row["pd_by_type"][kind]["pd"]
            assert old_row["pd_by_type"][kind]["se"] == pytest.approx(math.sqrt(p * (1 - p) / 600))
