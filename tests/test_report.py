"""`gpusim report` on small real runs: one self-contained HTML file whose first screen is the
summary (exposure, EL and its share, VaR/ES, contagion share, the worst spread gaps, PD by type
of default), every chart embedded as SVG, principal and exposure in the instrument table, one
money unit, no legend over data, a contagion chart of differences, an optional PDF, progress on
stderr, and a page that loads in a real headless Chromium (skipped where none is installed)."""

from __future__ import annotations

import base64
import copy
import html
import json
import re
import shutil
import subprocess
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from helpers import small_mapping

from gpusim.api import open_results, simulate
from gpusim.backends import get_backend
from gpusim.output.write import OutputError
from gpusim.report import ReportError, write_report
from gpusim.report.datasets import default_split, exposure_at_default
from gpusim.report.figures import ChartBook
from gpusim.report.pages import chart_steps, run_money
from gpusim.report.tables import technical_default_note
from gpusim.runs import run_to_file
from gpusim.scenario import validate_mapping
from gpusim.spec import build_spec

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
SECTION_ORDER = ("summary", "portfolio", "borrowers", "instruments", "contagion", "market", "paths", "run")


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


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    results = simulate(credit_mapping(), n_paths=3000, seed=11, save_paths=50)
    page = tmp_path_factory.mktemp("credit") / "memo" / "report.html"  # the folder does not exist yet: created
    return results, write_report(results, page, pdf=True)


@pytest.fixture(scope="module")
def credit_charts(credit):
    """The run's charts as Figures, drawn as write_report draws them."""
    results, _ = credit
    book = ChartBook()
    money = run_money(results)
    for _, draw in chart_steps(results, True, money):
        draw(book)
    return {chart.name: chart for chart in book.charts}, money


@pytest.fixture(scope="module")
def factors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("factors")
    spec = build_spec(validate_mapping(small_mapping(borrowers=[]), "test"), "float64")
    path = folder / "factors.h5"
    run_to_file(spec, get_backend("numpy"), path, n_paths=2000, save_paths=20, seed=11, show_progress=False)
    results = open_results(path)  # the report reads a real file, as after `gpusim run`
    return results, write_report(results, folder / "factors.html")


def in_millions(x: float) -> str:
    """How the page prints an amount in USD m: two decimals below 10, one above."""
    v = x / 1e6
    return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}"


def _figures(page: str) -> dict[str, bytes]:
    """{chart anchor: decoded SVG} of every embedded image."""
    found = re.findall(r'<figure id="chart-([^"]+)"><img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)
    return {name: base64.b64decode(data) for name, data in found}


def test_credit_run_is_one_file_embedding_every_chart_as_svg(credit):
    _, page_path = credit
    assert sorted(p.name for p in page_path.parent.iterdir()) == ["report.html", "report.pdf"]  # no loose files, no partials
    page = page_path.read_text(encoding="utf-8")
    figures = _figures(page)
    assert set(figures) == CREDIT_CHARTS | FACTOR_CHARTS
    for name, svg in figures.items():
        assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg and b"<path" in svg, name
        assert re.search(rb'<svg[^>]*width="[\d.]+pt"[^>]*height="[\d.]+pt"', svg), f"{name}: an SVG without a size has no natural width"
    assert page.count("<img ") == len(figures)
    assert not re.search(r"""(src|href)=(?!"data:|"#)""", page), "the page must load nothing from outside itself"


def test_api_gives_the_page_charts_as_matplotlib_figures(credit):
    """gpusim.report_figures: the charts of the page, by the same names, as Figures one can save."""
    from matplotlib.figure import Figure

    import gpusim

    results, page_path = credit
    figures = gpusim.report_figures(results)
    assert list(figures) == list(_figures(page_path.read_text(encoding="utf-8")))
    assert all(isinstance(fig, Figure) and fig.axes for fig in figures.values())


def test_summary_comes_first_and_run_facts_last(credit):
    _, page_path = credit
    page = page_path.read_text(encoding="utf-8")
    positions = [page.index(f'id="{key}"') for key in SECTION_ORDER]
    assert positions == sorted(positions)
    summary = page[page.index('id="summary"') : page.index('id="portfolio"')]
    for table in ("summary-table", "worst-gaps", "pd-by-type"):
        assert f'id="{table}"' in summary, table
    assert "<img" not in summary


def test_summary_numbers(credit):
    results, page_path = credit
    page = page_path.read_text(encoding="utf-8")
    headline = re.search(r'<table id="summary-table">.*?</table>', page).group(0)
    principal = sum(inst.principal for b in results.scenario.borrowers for inst in b.debt)
    el = float(results.summary.attrs["portfolio_el"])
    assert f"<td>Exposure at t0 (principal drawn + undrawn limits)</td><td class=\"num\">{in_millions(principal)}</td>" in headline
    assert f"{in_millions(el)} ± " in headline
    assert f"{el / principal:.2%}" in headline  # EL as % of exposure
    s = results.summary
    for k in range(s.sizes["level"]):
        assert f"{in_millions(s['var'].values[k])} / {in_millions(s['es'].values[k])}" in headline
    assert f"{float(results.contagion.attrs['contagion_share_of_el']):.1%}" in headline
    gaps = re.search(r'<table id="worst-gaps">.*?</table>', page).group(0)
    worst = str(s["instrument"].values[int(np.argmin(s["spread_gap_bps"].values))])
    assert html.escape(worst) in gaps.split("</tr>")[1]  # the first row under the header: the most under-priced


def test_pd_by_type_adds_up_and_technical_defaults_are_explained():
    """Four paths, one borrower: no default, a DSCR breach without loss, a payment default with loss, an LTV breach without loss."""
    outcomes = xr.Dataset(
        {
            "default_step": (("path", "borrower"), np.array([[-1], [3], [5], [7]])),
            "default_reason": (("path", "borrower"), np.array([[0], [2], [1], [3]], dtype=np.int8)),
            "loss": (("path", "instrument"), np.array([[0.0], [0.0], [5e6], [0.0]])),
        }
    )
    summary = xr.Dataset(
        {"lgd": ("instrument", [0.5])}, coords={"borrower": ["Neo"], "instrument": ["Loan"], "instrument_borrower": ("instrument", ["Neo"])}
    )
    results = SimpleNamespace(outcomes=outcomes, summary=summary)
    split = default_split(results)
    assert split["pd"][0] == 0.75
    assert (split["payment"][0], split["covenant_dscr"][0], split["covenant_ltv"][0], split["maturity"][0]) == (0.25, 0.25, 0.25, 0.0)
    assert split["no_loss"][0] == 0.5
    assert "Technical defaults: Neo 50.0% of paths" in technical_default_note(results)
    assert exposure_at_default(results)[0] == pytest.approx(5e6 / 3 / 0.5)  # mean loss on default paths / LGD
    no_technical = SimpleNamespace(outcomes=outcomes.assign(loss=outcomes["loss"] + 1.0), summary=summary)
    assert technical_default_note(no_technical) == ""


def test_pd_by_type_table_matches_the_outcomes(credit):
    results, page_path = credit
    page = page_path.read_text(encoding="utf-8")
    table = re.search(r'<table id="pd-by-type">.*?</table>', page).group(0)
    split = default_split(results)
    reasons = ("payment", "covenant_dscr", "covenant_ltv", "maturity")
    for b in range(results.summary.sizes["borrower"]):
        assert sum(split[r][b] for r in reasons) == pytest.approx(split["pd"][b])
        assert split["pd"][b] == pytest.approx(float(results.summary["pd"].values[b, -1]), abs=1e-12)
        assert f"{split['pd'][b]:.1%}" in table


def test_instrument_table_shows_principal_and_exposure_in_the_page_unit(credit):
    results, page_path = credit
    page = page_path.read_text(encoding="utf-8")
    table = re.search(r'<table id="instrument-table">.*?</table>', page).group(0)
    assert "<th>principal, USD m</th><th>exposure at default, USD m</th>" in table
    debt = {inst.name: inst.principal for b in results.scenario.borrowers for inst in b.debt}
    ead = exposure_at_default(results)
    for i, name in enumerate(results.summary["instrument"].values):
        row = next(r for r in table.split("<tr>") if html.escape(str(name)) in r)
        assert f">{in_millions(debt[str(name)])}<" in row
        if np.isfinite(ead[i]):
            assert 0 < ead[i] <= debt[str(name)] * 1.5  # discounted exposure plus accrued interest, not a different unit
            assert f">{in_millions(ead[i])}<" in row
    units = set(re.findall(r"USD (bn|m|k)\b", page))
    assert units == {"m"}, f"one money unit per page, found {units}"


def test_no_legend_sits_on_data_and_share_axes_have_margins(credit_charts):
    charts, money = credit_charts
    for name, chart in charts.items():
        for ax in chart.figure.axes:
            assert ax.get_legend() is None or not ax.axison, f"{name}: a legend inside the axes"
    pd_axes = charts["pd-term-structure"].figure.axes[0]
    low, high = pd_axes.get_ylim()
    assert low < 0 and high > 1, "a PD line at 0 % or 100 % would merge into the frame"
    assert money.unit in charts["loss-distribution"].figure.axes[0].get_xlabel()


def test_contagion_chart_shows_the_differences(credit, credit_charts):
    results, _ = credit
    charts, money = credit_charts
    _, ax_el = charts["contagion"].figure.axes[:2]
    owners = results.contagion["instrument_borrower"].values
    c = results.contagion
    expected = [
        float(c["el_with_chain"].values[owners == b].sum() - c["el_without_chain"].values[owners == b].sum()) / money.scale
        for b in c["borrower"].values
    ]
    bars = [p.get_width() for p in ax_el.patches]
    assert bars == pytest.approx(expected)
    assert money.unit in ax_el.get_xlabel()


def test_pdf_has_a_page_per_table_and_chart(credit):
    _, page_path = credit
    pdf = page_path.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type /Page\b(?!s)", pdf))
    tables = 3 + 4 + 3 + 1  # summary, sections, the desk's grades, ECL and reconciliation (no tranches here), run facts
    assert pages == tables + len(CREDIT_CHARTS | FACTOR_CHARTS)


def test_page_names_every_borrower_and_instrument_escaped(credit):
    results, page_path = credit
    page = page_path.read_text(encoding="utf-8")
    names = [str(n) for n in results.summary["borrower"].values] + [str(n) for n in results.summary["instrument"].values]
    for name in names:
        assert html.escape(name) in page, name
    assert "<Partners>" not in page and "<A>" not in page
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "anchors must be unique"
    for anchor in re.findall(r'href="#([^"]+)"', page):
        assert anchor in ids
    assert f"<td>seed</td><td>{results.attrs['seed']}</td>" in page
    assert html.escape(results.attrs["config_yaml"]) in page


def test_factor_only_run_gets_factor_charts_and_no_credit_sections(factors):
    results, page_path = factors
    assert results.outcomes is None
    page = page_path.read_text(encoding="utf-8")
    assert set(_figures(page)) == FACTOR_CHARTS
    assert "Factor-only run" in page and 'id="summary"' not in page
    assert "Portfolio loss" not in page and "break-even" not in page


def test_run_without_contagion_or_saved_paths_skips_those_charts(credit, tmp_path):
    results, _ = credit
    bare = replace(results, contagion=None, paths=results.paths.isel(path=slice(0, 0)))
    page = write_report(bare, tmp_path / "bare.html").read_text(encoding="utf-8")
    assert set(_figures(page)) == (CREDIT_CHARTS - {"contagion"}) | {c for c in FACTOR_CHARTS if c.startswith("fan-")}
    assert "contagion" not in page.lower() and "without chain" not in page


def test_progress_goes_to_stderr(factors, tmp_path, capsys):
    results, _ = factors
    write_report(results, tmp_path / "quiet.html")
    assert capsys.readouterr().err == ""
    write_report(results, tmp_path / "loud.html", progress=True)
    captured = capsys.readouterr()
    assert re.search(r"report .*\b9/9\b", captured.err) and captured.out == ""


def test_unwritable_or_existing_targets_fail_with_one_line_naming_them(factors, tmp_path):
    results, _ = factors
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = {
        blocker / "report.html": "Not a directory",
        blocker: "already exists; pass --overwrite",
        folder: "is a directory",
    }
    for target, message in cases.items():
        with pytest.raises(ReportError, match=re.escape(str(target)) + ".*" + re.escape(message)) as caught:
            write_report(results, target)
        assert "\n" not in str(caught.value)
        assert isinstance(caught.value, OutputError)  # the CLI's user-error handler turns it into exit code 2
    assert blocker.read_text() == "not a folder"
    write_report(results, blocker, overwrite=True)
    assert blocker.read_text().startswith("<!DOCTYPE html>")


CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const box = document.getElementById("summary-table").getBoundingClientRect();
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter((img) => !img.complete || img.naturalWidth === 0).map((img) => img.alt),
    summaryTop: box.top, summaryBottom: box.bottom, screenHeight: window.innerHeight,
  });
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="no chromium or chromium-browser on PATH (Debian: apt-get install -y chromium)")
def test_page_loads_in_headless_chromium_with_the_summary_on_the_first_screen(credit, tmp_path):
    _, page_path = credit
    page = page_path.read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,900",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', done.stdout)
    assert found, f"chromium exited {done.returncode} without the check: {done.stderr[-2000:]}"
    check = json.loads(html.unescape(found.group(1)))
    assert check["images"] == len(CREDIT_CHARTS | FACTOR_CHARTS) and check["broken"] == []
    assert check["summaryTop"] >= 0 and check["summaryBottom"] <= check["screenHeight"], check
