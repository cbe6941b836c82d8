"""`gpusim report` on small real runs: every chart is a valid PNG of the promised size, the
page references each chart and names every borrower and instrument (HTML-escaped), a
factor-only run gets the factor charts and no credit charts, and a folder that cannot be
written fails with one clear message naming it."""

from __future__ import annotations

import copy
import html
import re
import struct
from dataclasses import replace

import pytest
from conftest import small_mapping
from matplotlib.image import imread

from gpusim.api import open_results, simulate
from gpusim.backends import get_backend
from gpusim.output.write import OutputError
from gpusim.report import PNG_SIZE, ReportError, write_report
from gpusim.runs import run_to_file
from gpusim.scenario import validate_mapping
from gpusim.spec import build_spec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FACTOR_CHARTS = {
    "fan-crypto-btc",
    "fan-crypto-eth",
    "fan-gpu-h100",
    "fan-gpu-b200",
    "fan-market",
    "paths-market",
    "paths-gpu-h100",
    "paths-gpu-b200",
}
CREDIT_CHARTS = {"loss-distribution", "pd-term-structure", "coverage-neo-partners", "coverage-orbit-cloud", "spreads", "contagion"}


def credit_mapping() -> dict:
    """SMALL with a second borrower, and names that need HTML escaping."""
    data = small_mapping()
    neo = data["borrowers"][0]
    neo["name"] = "Neo & <Partners>"
    neo["debt"][0]["name"] = 'Neo "DDTL" <A>'
    orbit = copy.deepcopy(neo)
    orbit["name"] = "Orbit Cloud"
    orbit["fleets"][0].update(generation="B200", count=8000, purchase_price=47000.0, contract_rate=3.3)
    orbit["debt"][0].update(name="Orbit Notes", kind="bond", amortization="bullet", principal=2.5e8, collateral={"fleets": ["B200"]})
    orbit["debt"][0]["covenants"] = {"ltv_max": 0.9}
    data["borrowers"].append(orbit)
    return data


def png_size(path) -> tuple[int, int]:
    """(width, height) from the PNG header."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    results = simulate(credit_mapping(), n_paths=3000, seed=11, save_paths=50)
    out = tmp_path_factory.mktemp("credit") / "report"  # does not exist yet: write_report creates it
    return results, write_report(results, out)


@pytest.fixture(scope="module")
def factors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("factors")
    spec = build_spec(validate_mapping(small_mapping(borrowers=[]), "test"), "float64")
    path = folder / "factors.h5"
    run_to_file(spec, get_backend("numpy"), path, n_paths=2000, save_paths=20, seed=11, show_progress=False)
    results = open_results(path)  # the report reads a real file, as after `gpusim run`
    return results, write_report(results, folder / "report")


def _charts(index):
    return {p.stem for p in index.parent.glob("*.png")}


def test_credit_run_draws_every_chart(credit):
    _, index = credit
    assert index.name == "index.html" and index.is_file()
    assert _charts(index) == CREDIT_CHARTS | FACTOR_CHARTS


@pytest.mark.parametrize("report", ["credit", "factors"])
def test_every_chart_is_a_valid_png_of_the_promised_size(report, request):
    _, index = request.getfixturevalue(report)
    pngs = sorted(index.parent.glob("*.png"))
    assert pngs
    for png in pngs:
        assert png_size(png) == PNG_SIZE, png.name
        pixels = imread(png)  # decodes the whole image: a truncated or corrupt file fails here
        assert pixels.shape[:2] == (PNG_SIZE[1], PNG_SIZE[0]), png.name
        assert pixels.std() > 0, f"{png.name} is blank"


def test_page_shows_every_chart_and_names_every_borrower_and_instrument(credit):
    results, index = credit
    page = index.read_text(encoding="utf-8")
    for png in index.parent.glob("*.png"):
        assert f'src="{png.name}"' in page, png.name
    names = [str(n) for n in results.summary["borrower"].values] + [str(n) for n in results.summary["instrument"].values]
    assert set(names) == {"Neo & <Partners>", "Orbit Cloud", 'Neo "DDTL" <A>', "Orbit Notes"}
    for name in names:
        assert html.escape(name) in page, name
    assert "<Partners>" not in page and "<A>" not in page  # escaped, never raw markup
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must not load anything from outside its folder"
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "anchors must be unique"
    for anchor in re.findall(r'href="#([^"]+)"', page):
        assert anchor in ids


def test_page_tables_carry_the_summary_numbers(credit):
    results, index = credit
    page = index.read_text(encoding="utf-8")
    s = results.summary
    for b in range(s.sizes["borrower"]):
        assert f"{s['pd'].values[b, 12]:.1%}" in page  # PD at 1 year (monthly steps)
        assert f"{s['pd'].values[b, -1]:.1%} ± {s['pd_se'].values[b, -1]:.1%}" in page
    for i in range(s.sizes["instrument"]):
        assert f"{s['market_spread_bps'].values[i]:,.0f}" in page
        assert f"{s['spread_gap_bps'].values[i]:+,.0f}" in page
    for k in range(s.sizes["level"]):
        assert f"{s['var'].values[k] / 1e6:,.1f}" in page
    share = float(results.contagion.attrs["contagion_share_of_el"])
    assert f"share of portfolio EL: {share:.1%}" in page
    assert f"<td>seed</td><td>{results.attrs['seed']}</td>" in page
    assert html.escape(results.attrs["config_yaml"]) in page  # the resolved scenario, re-runnable


def test_factor_only_run_gets_factor_charts_and_no_credit_charts(factors):
    results, index = factors
    assert results.outcomes is None
    assert _charts(index) == FACTOR_CHARTS
    page = index.read_text(encoding="utf-8")
    for png in index.parent.glob("*.png"):
        assert f'src="{png.name}"' in page
    assert "Factor-only run" in page
    assert "Portfolio loss" not in page and "break-even" not in page


def test_run_without_contagion_or_saved_paths_skips_those_charts(credit, tmp_path):
    results, _ = credit
    bare = replace(results, contagion=None, paths=results.paths.isel(path=slice(0, 0)))
    index = write_report(bare, tmp_path)
    assert _charts(index) == (CREDIT_CHARTS - {"contagion"}) | {c for c in FACTOR_CHARTS if c.startswith("fan-")}
    page = index.read_text(encoding="utf-8")
    assert "contagion" not in page.lower() and "without chain" not in page


def test_unwritable_folder_fails_with_one_line_naming_it(factors, tmp_path):
    results, _ = factors
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for target in (blocker, blocker / "report"):
        with pytest.raises(ReportError, match=re.escape(str(target)) + ": cannot write report") as caught:
            write_report(results, target)
        assert "\n" not in str(caught.value)
        assert isinstance(caught.value, OutputError)  # the CLI's user-error handler turns it into exit code 2
