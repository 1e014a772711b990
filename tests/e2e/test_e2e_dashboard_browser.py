"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
``changeover serve`` running a canary of real replicas under steady load.

Given v1 serving, when v2 is applied the list page shows the canary live (no reload) as it
reaches its first pause; on the rollout page an action without the token is refused and
changes nothing; once signed in with the token, promote (confirmed in the dialog) moves
it to its next pause and shows its event; the background analysis' measurements are
charted against their threshold; abort (confirmed) sends all traffic back to v1, checked
through the real router; undo to revision 1 (chosen in the page) makes it current again;
the traffic charts draw live points; the page logs no console error. Screenshots of both
pages are saved under the test's tmp dir, or under ``$CHANGEOVER_ARTIFACTS`` when set (for
people to look at).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_load import BackgroundLoad
from e2e_serve import Serve
from e2e_specs import example_rollout, with_version, write_rollout

from tests import browser_helpers

pytestmark = pytest.mark.slow

STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
# In the background from the first step: measurements for the page to chart (threshold 0.05).
ANALYSIS = {
    "metrics": [
        {
            "name": "error-rate",
            "interval": "1s",
            "successCondition": "result <= 0.05",
            "provider": {"builtin": {"metric": "error-rate", "revision": "canary", "window": "5s"}},
        }
    ]
}


@pytest.fixture
def browser_page() -> Iterator[tuple[Any, list[str]]]:
    """A chromium page and the console errors it logs."""
    with browser_helpers.page(width=1400, height=1000) as opened:
        yield opened


def _artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CHANGEOVER_ARTIFACTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def _confirm(page: Any, action: str) -> None:
    page.click(f'[data-action="{action}"]')
    page.click("#confirm-ok")


def test_dashboard_watches_promotes_and_aborts_a_canary(
    serve: Serve, tmp_path: Path, browser_page: tuple[Any, list[str]]
) -> None:
    page, console_errors = browser_page
    v1 = example_rollout(
        "canary",
        name="shown",
        version="v1",
        mark=serve.mark,
        strategy_patch={"steps": STEPS, "analysis": ANALYSIS},
    )
    spec = write_rollout(tmp_path / "shown.yaml", v1)
    assert serve.apply(spec, "--wait").code == 0
    url = serve.status("shown")["endpoint"]
    shots = _artifacts(tmp_path)

    page.goto(f"{serve.url}/dashboard/")
    row = page.locator('tr[data-rollout="shown"]')
    row.locator('[data-phase="Healthy"]').wait_for()

    with BackgroundLoad(url, rate=40):
        # The canary, live on the list page: no reload between apply and its first pause.
        write_rollout(spec, with_version(v1, "v2"))
        assert serve.apply(spec).code == 0
        row.locator('[data-phase="Paused"]').wait_for()
        row.locator('.weights[data-weights=\'{"1":80,"2":20}\']').wait_for()
        page.screenshot(path=str(shots / "dashboard-list.png"), full_page=True)

        page.click('a[href="#/rollouts/shown"]')
        page.locator('ol.steps li.current[data-step-index="1"]').wait_for()

        # Without the token: refused, and nothing moved.
        _confirm(page, "promote")
        page.locator("#toast div.bad", has_text="refused").wait_for()
        assert serve.api_status("shown")["currentStepIndex"] == 1

        # Signed in with the token: promote advances to the next pause, shown as its event.
        token = (serve.state_dir / "token").read_text().strip()
        page.fill("#token", token)
        page.click("#sign-in")
        page.locator('[data-auth="in"]').wait_for()
        _confirm(page, "promote")
        page.locator('ol.steps li.current[data-step-index="3"]').wait_for()
        page.locator('[data-part="events"] tr[data-event="RolloutPromoted"]').first.wait_for()
        status = serve.api_status("shown")
        assert status["currentStepIndex"] == 3 and status["weights"] == {"1": 40, "2": 60}

        # Live traffic charts: points keep coming while the page is open.
        page.wait_for_function(
            "() => Number(document.querySelector('[data-chart=\"rate\"] .uplot')"
            "?.dataset.points || 0) >= 3"
        )
        # The analysis run, its measurements charted with the threshold as a second series.
        page.locator('[data-measurements="error-rate"] .uplot').first.wait_for()
        legend = page.locator('[data-measurements="error-rate"]').first.inner_text()
        assert "success <= 0.05" in legend, legend
        page.screenshot(path=str(shots / "dashboard-rollout.png"), full_page=True)

        # Abort: every request goes back to v1, through the real router.
        _confirm(page, "abort")
        page.locator('h1 [data-phase="Aborted"]').wait_for()
        serve.wait_phase("shown", "Aborted", within=30)
        assert serve.api_status("shown")["weights"] == {"1": 100}

        # Undo to a chosen revision: v1's template becomes the current revision again.
        page.select_option("[data-undo-target]", "1")
        _confirm(page, "undo")
        serve.wait_phase("shown", "Healthy", revision=1, within=60)
        page.locator('h1 [data-phase="Healthy"]').wait_for()
    # (Playwright's sync API owns this thread's event loop: the load runs on a thread.)
    with BackgroundLoad(url, rate=60) as load:
        load.wait_for("1", 60)
        after = load.stop()
    assert set(after.by_revision) == {"1"} and after.failures == 0, after.by_revision
    assert (shots / "dashboard-list.png").stat().st_size > 10_000
    # The one error chromium logs is the 401 of the promote refused on purpose above.
    refused = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    assert console_errors == [refused], console_errors
