"""The dashboard at / in a headless Chromium, against the whole stack: the jobs list, a
job, a model, the submit page and the API key. test_dashboard_pages.py has the datasets,
comparing jobs and YAML specs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.helpers.browser import screenshot, x_ticks
from tests.helpers.stack import EXAMPLES, REPO, Stack, digits_rows

pytestmark = pytest.mark.e2e

STATIC = REPO / "services" / "gateway" / "static"


def test_page_and_scripts_are_served(stack: Stack) -> None:
    index = stack.http.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/app.js">' in index.text
    for path in ("/ui/app.js", "/ui/vendor/uPlot.esm.js"):
        script = stack.http.get(path)
        assert script.status_code == 200, path
        assert script.headers["content-type"].startswith("text/javascript"), path
    assert stack.http.get("/ui/style.css").headers["content-type"].startswith("text/css")
    assert "/" not in stack.http.get("/openapi.json").json()["paths"]


def test_jobs_list_shows_the_quick_job(stack: Stack, quick_job: dict[str, Any], page: Page) -> None:
    page.goto(f"{stack.url}/")
    row = page.locator(f'#jobs-table tr[data-job-id="{quick_job["id"]}"]')
    row.wait_for()
    assert "quick-digits" in row.inner_text()
    assert quick_job["id"][:12] in row.inner_text()
    assert row.locator(".badge").inner_text() == "succeeded"
    assert "4 / 4" in row.inner_text()
    page.locator(f'#models-table tr[data-model-id="{quick_job["id"]}"]').wait_for()
    screenshot(page, "jobs")


def test_job_page_draws_curves_and_lists_trials(
    stack: Stack, quick_job: dict[str, Any], page: Page
) -> None:
    page.goto(f"{stack.url}/#/jobs/{quick_job['id']}")
    page.locator("#trials-table tbody tr[data-trial-id]").nth(3).wait_for()
    assert page.locator("#trials-table tbody tr").count() == 4
    # The metric's chart and val_loss's, each drawn on a canvas with something on it.
    page.wait_for_function(
        """() => {
            const canvases = [...document.querySelectorAll("#curves canvas")];
            return canvases.length >= 2 && canvases.every((canvas) => {
                const pixels = canvas.getContext("2d")
                    .getImageData(0, 0, canvas.width, canvas.height).data;
                return pixels.some((value, i) => i % 4 === 3 && value > 0);
            });
        }"""
    )
    assert page.locator("#curves figcaption").all_inner_texts() == ["val_accuracy", "val_loss"]
    # One scatter per tuned parameter of examples/quick.json.
    assert page.locator("#scatter figcaption").all_inner_texts() == ["lr", "hidden_units"]
    # A grid's values are the ticks of its axis, each labelled with its value.
    assert x_ticks(page, "lr") == ["0.001", "0.003"]
    assert x_ticks(page, "hidden_units") == ["64", "128"]
    spec = json.loads(page.locator("#job-spec").inner_text())
    assert spec["name"] == "quick-digits"
    csv = page.locator("#trials-csv")
    assert csv.get_attribute("href") == f"/jobs/{quick_job['id']}/trials?format=csv"

    # Clicking a header sorts by it; again, the other way.
    header = page.locator('#trials-table th[data-key="trial_id"]')
    header.click()
    ascending = page.locator("#trials-table tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.trialId)"
    )
    assert ascending == sorted(ascending)
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    descending = page.locator("#trials-table tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.trialId)"
    )
    assert descending == ascending[::-1]
    header.click()  # back to ascending ids for the screenshot
    screenshot(page, "job")


def test_a_running_or_queued_job_is_edited_from_its_page(stack: Stack, page: Page) -> None:
    space = {"epochs": 200, "batch_size": 8, "lr": {"grid": [0.01, 0.02]}}
    spec = {"name": "edit-me", "priority": "low", "dataset": {"builtin": "digits"},
            "search_space": space}  # fmt: skip
    job_id = stack.http.post("/jobs", json=spec).json()["id"]
    try:
        page.goto(f"{stack.url}/#/jobs/{job_id}")
        page.locator("#edit-form").wait_for()
        page.fill("#edit-max-concurrent", "1")
        page.fill("#edit-time-budget", "900")
        page.click("#edit-save")
        page.wait_for_function(
            "() => document.querySelector('#job-spec').textContent"
            ".includes('\"time_budget_s\": 900')"
        )
        screenshot(page, "job-edit")
        edited = stack.http.get(f"/jobs/{job_id}").json()["spec"]
        assert edited["max_concurrent_trials"] == 1 and edited["time_budget_s"] == 900
        # Shortening the budget is refused, and the page says why.
        page.fill("#edit-time-budget", "60")
        page.click("#edit-save")
        page.locator("#edit-errors").wait_for()
        assert "can only be extended" in page.locator("#edit-errors").inner_text()
    finally:
        stack.http.delete(f"/jobs/{job_id}")
    stack.wait_for(job_id, timeout_s=120)
    page.goto(f"{stack.url}/#/jobs/{job_id}")
    page.locator("#job-spec").wait_for()
    assert page.locator("#edit-form").count() == 0  # an ended job has nothing to edit


def test_model_page_predicts(stack: Stack, quick_job: dict[str, Any], page: Page) -> None:
    row = digits_rows(1)[0]
    expected = stack.http.post(f"/models/{quick_job['id']}/predict", json={"instances": [row]})
    assert expected.status_code == 200, expected.text
    page.goto(f"{stack.url}/#/models/{quick_job['id']}")
    textarea = page.locator("#predict-input")
    prefilled = json.loads(textarea.input_value())
    # Every column the model reads, 0 to start from; pixels blank in every image it
    # trained on are ignored, and left out.
    model = stack.http.get(f"/models/{quick_job['id']}").json()
    read = [name for name in model["feature_names"] if model["columns"][name] != "ignore"]
    assert list(prefilled) == read and set(prefilled.values()) == {0}
    assert len(read) < len(row)
    assert page.locator("#model-features .chip").count() == len(row)
    assert page.locator("#model-classes .chip").count() == 10
    # Without keys every caller is an admin, who may see where the checkpoint is.
    assert page.locator("#model-checkpoint").inner_text().startswith("Checkpoint: ")

    textarea.fill(json.dumps(row))
    page.locator("#predict-form button[type=submit]").click()
    prediction = page.locator("#predict-result .prediction")
    prediction.wait_for()
    assert prediction.inner_text() == str(expected.json()["predictions"][0])
    assert page.locator("#predict-result .probability").count() == 5
    screenshot(page, "model")

    textarea.fill('{"pixel_0_0": 1}')
    page.locator("#predict-form button[type=submit]").click()
    page.locator("#predict-error").wait_for()
    assert "pixel_0_1" in page.locator("#predict-error").inner_text()


def test_submit_shows_errors_by_field(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.url}/#/submit")
    bad = {"dataset": {"builtin": "iris"}, "search_space": {"lr": 0}}
    page.locator("#spec-input").fill(json.dumps(bad))
    page.locator("#submit-button").click()
    error = page.locator('#submit-errors li[data-field="search_space.lr"]')
    error.wait_for()
    assert "search_space.lr" in error.inner_text()
    assert "greater than 0" in error.inner_text()
    assert re.fullmatch(r"#/submit", page.evaluate("location.hash"))
    screenshot(page, "submit-error")

    page.locator("#spec-input").fill("{not json")
    page.locator("#submit-button").click()
    assert "Not valid JSON" in page.locator("#submit-errors").inner_text()


def test_submit_examples_are_the_repository_examples(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.url}/#/submit")
    page.locator("#spec-input").wait_for()
    embedded = page.evaluate(
        "async () => (await import('/ui/examples.js')).EXAMPLES",
    )
    assert embedded, "no examples on the submit page"
    for name, text in embedded.items():
        assert json.loads(text) == json.loads((EXAMPLES / name).read_text()), name
    assert json.loads(page.locator("#spec-input").input_value()) == json.loads(
        (EXAMPLES / "quick.json").read_text()
    )


def test_api_key_is_asked_for_on_401_and_sent_after(stack: Stack, page: Page) -> None:
    """The server has no auth yet: the browser's requests are answered 401 here until
    they carry a key."""
    seen: list[str | None] = []

    def guard(route: Any) -> None:
        key = route.request.headers.get("authorization")
        seen.append(key)
        if key is None:
            route.fulfill(status=401, json={"detail": "an API key is needed"})
        else:
            route.continue_()

    page.route(re.compile(re.escape(stack.url) + r"/(jobs|models)([/?].*)?"), guard)
    page.goto(f"{stack.url}/")
    page.locator("#auth").wait_for()
    page.locator("#api-key").fill("s3cret")
    page.locator("#auth button[type=submit]").click()
    page.locator("#jobs-table").wait_for()
    page.wait_for_function("document.querySelector('#page-error') === null")
    assert page.evaluate("localStorage.getItem('tunefleet.apiKey')") == "s3cret"
    assert seen[-1] == "Bearer s3cret"
    assert page.locator("#forget-key").is_visible()


def test_static_files_are_packaged() -> None:
    """Every file the page loads is matched by the package data globs."""
    files = {p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert {"static/index.html", "static/app.js", "static/vendor/uPlot.esm.js"} <= files
    assert all(re.fullmatch(r"static/(vendor/)?[^/]+", path) for path in files), files
