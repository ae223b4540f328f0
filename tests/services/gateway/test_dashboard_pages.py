"""The dashboard's datasets page, job comparison, parameter plots and YAML specs, in a
headless Chromium against the whole stack (see conftest.py for the browser)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from playwright.sync_api import FilePayload, Page, Route

from tests.helpers.browser import screenshot, x_ticks
from tests.helpers.stack import EXAMPLES, MAX_TRIALS, Stack
from tests.helpers.tables import messy_frame, semicolon_csv

pytestmark = pytest.mark.e2e

# A search over a categorical axis (a grid of batch sizes) and a log one (lr): 8 trials.
TICKS_SPEC = {
    "name": "ticks-iris",
    "dataset": {"builtin": "iris"},
    "search_space": {
        "lr": {"loguniform": [0.0001, 0.1]},
        "batch_size": {"grid": [8, 16, 32, 64]},
        "hidden_units": 32,
        "epochs": 2,
    },
    "search": {"algorithm": "random", "num_samples": 2, "seed": 5},
}


@pytest.fixture(scope="module")
def ticks_job(stack: Stack) -> dict[str, Any]:
    answer = stack.http.post("/jobs", json=TICKS_SPEC)
    assert answer.status_code == 202, answer.text
    job = stack.wait_for(answer.json()["id"])
    assert job["state"] == "succeeded", job
    return job


def plants_csv(rows: int, rare: bool = False) -> bytes:
    """Two numeric features and a text label; with ``rare``, one row of a third class."""
    lines = [f"{i},{i * 0.5},{['x', 'y'][i % 2]}" for i in range(rows)]
    if rare:
        lines.append("99,1.5,rare")
    return ("n,width,label\n" + "\n".join(lines) + "\n").encode()


def upload(stack: Stack, content: bytes, target: str = "label") -> dict[str, Any]:
    answer = stack.http.post(
        f"/datasets?target={target}", content=content, headers={"content-type": "text/csv"}
    )
    assert answer.status_code == 201, answer.text
    summary: dict[str, Any] = answer.json()
    return summary


def choose_file(page: Page, name: str, content: bytes) -> None:
    page.locator("#dataset-file").set_input_files(
        files=[FilePayload(name=name, mimeType="text/csv", buffer=content)]
    )


def test_parameter_plots_label_ticks_with_the_values_tried(
    stack: Stack, ticks_job: dict[str, Any], page: Page
) -> None:
    page.goto(f"{stack.url}/#/jobs/{ticks_job['id']}")
    page.locator("#trials-table tbody tr[data-trial-id]").nth(7).wait_for()
    page.locator("#scatter figure").nth(1).wait_for()
    assert page.locator("#scatter figcaption").all_inner_texts() == ["lr", "batch_size"]
    assert x_ticks(page, "batch_size") == ["8", "16", "32", "64"]
    # The loguniform range as it was searched, a tick at each power of ten.
    assert x_ticks(page, "lr") == ["1e-4", "1e-3", "1e-2", "1e-1"]
    screenshot(page, "job-parameters")


def test_datasets_page_uploads_summarises_and_deletes(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.url}/#/datasets")
    page.locator("#dataset-target").fill("label")

    # Refused: the checks' message names the column and the fix.
    choose_file(page, "colours.csv", b"n,colour,colour,label\n1,red,red,x\n2,blue,blue,y\n")
    page.locator("#upload-button").click()
    refused = page.locator("#upload-error")
    refused.wait_for()
    assert "colours.csv was not taken" in refused.inner_text()
    assert "more than once: 'colour' (2 times)" in refused.inner_text()

    # Taken: ~0.5 MB, sent with its progress, then summarised.
    content = plants_csv(30_000, rare=True)
    choose_file(page, "plants.csv", content)
    page.locator("#upload-button").click()
    page.locator("#dataset-summary section").wait_for()
    assert "plants.csv" in page.locator("#upload-progress-text").inner_text()
    assert page.locator("#upload-progress").evaluate("bar => bar.value") == 1
    assert page.locator("#upload-error").count() == 0
    [listed] = [d for d in stack.http.get("/datasets").json() if d["rows"] == 30_001]
    assert page.evaluate("location.hash") == f"#/datasets/{listed['id']}"
    assert page.locator("#dataset-rows").inner_text() == "30001"
    types = page.locator("#dataset-columns tbody tr").evaluate_all(
        "rows => rows.map(row => [row.dataset.column, row.cells[1].textContent,"
        " row.cells[2].textContent])"
    )
    assert types == [
        ["n", "integer", "numeric"],
        ["width", "float", "numeric"],
        ["label", "text", "target"],
    ]
    classes = page.locator("#dataset-classes .class-count")
    assert classes.evaluate_all("rows => rows.map(row => row.dataset.label)") == ["rare", "x", "y"]
    assert page.locator('.class-count[data-label="rare"] .value').inner_text().startswith("1 ·")
    assert "largest class has 15000" in page.locator("#dataset-balance").inner_text()
    problems = page.locator("#dataset-problems").inner_text()
    assert "'rare' (1 row)" in problems and "stratify" in problems
    row = page.locator(f'#datasets-table tr[data-dataset-id="{listed["id"]}"]')
    assert row.locator("td").nth(6).inner_text() == "1"  # one problem
    screenshot(page, "datasets")

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator(".delete-dataset").click()
    row.wait_for(state="detached")
    assert listed["id"] not in [d["id"] for d in stack.http.get("/datasets").json()]
    assert "Deleted dataset" in page.locator("#flash").inner_text()


def test_a_dataset_an_active_job_uses_says_which_job_when_deleted(stack: Stack, page: Page) -> None:
    dataset = upload(stack, plants_csv(300))
    # Long enough to be queued or running while the page tries to delete its data.
    spec = {"dataset": {"upload": dataset["id"]}, "search_space": {"epochs": 200}}
    answer = stack.http.post("/jobs", json=spec)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    try:
        page.goto(f"{stack.url}/#/datasets")
        row = page.locator(f'#datasets-table tr[data-dataset-id="{dataset["id"]}"]')
        page.once("dialog", lambda dialog: dialog.accept())
        row.locator(".delete-dataset").click()
        note = page.locator("#flash .note-error")
        note.wait_for()
        assert f"job {job_id}" in note.inner_text()
        assert f"uses dataset {dataset['id']}" in note.inner_text()
        assert f"DELETE /jobs/{job_id} cancels it" in note.inner_text()
        assert row.is_visible()
        screenshot(page, "datasets-in-use")
    finally:
        stack.http.delete(f"/jobs/{job_id}")
        assert stack.wait_for(job_id)["state"] in ("cancelled", "succeeded")


def test_a_table_to_score_is_shown_as_one_with_no_target(stack: Stack, page: Page) -> None:
    content = b"row_id,n,width\na,1,0.5\nb,2,1.0\nc,3,1.5\n"
    answer = stack.http.post(
        "/datasets?purpose=scoring", content=content, headers={"content-type": "text/csv"}
    )
    assert answer.status_code == 201, answer.text
    dataset_id = answer.json()["id"]
    page.goto(f"{stack.url}/#/datasets")
    row = page.locator(f'#datasets-table tr[data-dataset-id="{dataset_id}"]')
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[3:5] == ["\u2013", "for scoring"]
    assert row.locator(".start-job").count() == 0  # a tuning job cannot train on it
    page.goto(f"{stack.url}/#/datasets/{dataset_id}")
    page.locator("#dataset-scoring").wait_for()
    assert "batch job" in page.locator("#dataset-scoring").inner_text()
    assert page.locator("#start-job").count() == 0
    assert page.locator("#dataset-task").inner_text() == "for scoring"
    assert page.locator("#dataset-columns tbody tr").count() == 3  # row_id, n, width: no target
    screenshot(page, "dataset-for-scoring")


def test_a_job_starts_from_a_dataset_with_the_seed_grid(stack: Stack, page: Page) -> None:
    dataset = upload(stack, plants_csv(120))
    page.goto(f"{stack.url}/#/datasets/{dataset['id']}")
    page.locator("#start-job").click()
    page.wait_for_function("location.hash.startsWith('#/submit?dataset=')")
    page.locator("#submit-dataset p").wait_for()
    spec = json.loads(page.locator("#spec-input").input_value())
    seed = json.loads((EXAMPLES / "seed-grid.json").read_text())
    assert spec["dataset"] == {
        "upload": dataset["id"],
        "target": "label",
        "scaler": seed["dataset"]["scaler"],
        "balance": seed["dataset"]["balance"],
    }
    assert spec["search_space"] == seed["search_space"]
    assert (spec["metric"], spec["mode"], spec["task"]) == ("val_accuracy", "max", "classification")
    assert dataset["id"][:12] in page.locator("#submit-dataset").inner_text()
    screenshot(page, "submit-from-dataset")

    # The seed's 560 trials are more than this stack takes: the API says so by field.
    page.locator("#submit-button").click()
    error = page.locator("#submit-errors li")
    error.wait_for()
    assert f"at most {MAX_TRIALS} are allowed here" in error.inner_text()


def test_jobs_are_compared_side_by_side(
    stack: Stack, quick_job: dict[str, Any], ticks_job: dict[str, Any], page: Page
) -> None:
    page.goto(f"{stack.url}/")
    compare = page.locator("#compare-button")
    for job in (quick_job, ticks_job):
        page.locator(f'#jobs-table tr[data-job-id="{job["id"]}"] .compare-pick').check()
    # The list refreshes every 2 s: the ticks stay.
    page.wait_for_timeout(2500)
    assert page.locator(".compare-pick:checked").count() == 2
    assert compare.inner_text() == "Compare 2 jobs"
    compare.click()
    table = page.locator("#compare-table")
    table.wait_for()
    heads = table.locator("thead th[data-job-id]")
    assert heads.evaluate_all("cells => cells.map(c => c.dataset.jobId)") == [
        quick_job["id"],
        ticks_job["id"],
    ]
    best = [stack.http.get(f"/jobs/{j['id']}").json()["best"] for j in (quick_job, ticks_job)]
    units = table.locator('tr[data-key="hidden_units"] td').all_inner_texts()
    assert units == [str(b["config"]["hidden_units"]) for b in best]
    batch = table.locator('tr[data-key="batch_size"] td').all_inner_texts()
    assert batch == [str(b["config"]["batch_size"]) for b in best]
    accuracy = table.locator('tr[data-kind="metric"][data-key="val_accuracy"] td')
    values = [float(text) for text in accuracy.all_inner_texts()]
    assert values == pytest.approx([b["value"] for b in best], abs=1e-3)
    winner = values.index(max(values))
    assert accuracy.nth(winner).locator(".better").count() == 1

    # The best trials' curves on one chart per metric, one line per job.
    page.wait_for_function(
        """() => {
            const canvas = document.querySelector("#compare-curves canvas");
            if (!canvas) return false;
            const pixels = canvas.getContext("2d")
                .getImageData(0, 0, canvas.width, canvas.height).data;
            return pixels.some((value, i) => i % 4 === 3 && value > 0);
        }"""
    )
    charts = page.locator("#compare-curves figure")
    assert charts.locator("figcaption").all_inner_texts() == ["val_accuracy", "val_loss"]
    legend = charts.first.locator(".u-legend .u-series .u-label").all_inner_texts()
    assert [label.split(" (")[0] for label in legend[1:]] == ["quick-digits", "ticks-iris"]
    screenshot(page, "compare")


def test_specs_are_written_in_yaml_too(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.url}/#/submit")
    editor = page.locator("#spec-input")
    page.locator("#spec-format-yaml").check()
    quick = json.loads((EXAMPLES / "quick.json").read_text())
    assert yaml.safe_load(editor.input_value()) == quick
    assert "lr: {grid: [0.001, 0.003]}" in editor.input_value()

    editor.fill("dataset: {builtin: iris\nsearch_space: [\n")
    page.locator("#submit-button").click()
    problem = page.locator("#submit-errors").inner_text()
    assert "Not valid YAML" in problem and re.search(r"line \d+, column \d+", problem)

    editor.fill("dataset:\n  builtin: iris\nsearch_space:\n  lr: 0\n")
    page.locator("#submit-button").click()
    error = page.locator('#submit-errors li[data-field="search_space.lr"]')
    error.wait_for()
    assert "greater than 0" in error.inner_text()
    screenshot(page, "submit-yaml-error")

    # A .yaml file opens in YAML; what is submitted is what it says.
    text = "name: yaml-iris\ndataset: {builtin: iris}\nsearch_space:\n  lr: 0.01\n  epochs: 1\n"
    page.locator("#spec-format-json").check()
    page.locator("#spec-file").set_input_files(
        files=[FilePayload(name="iris.yaml", mimeType="application/yaml", buffer=text.encode())]
    )
    page.wait_for_function("document.querySelector('#spec-format-yaml').checked")
    assert editor.input_value() == text
    page.locator("#submit-button").click()
    page.wait_for_function("/^#\\/jobs\\/[0-9a-f]{32}$/.test(location.hash)")
    job_id = page.evaluate("location.hash").rsplit("/", 1)[1]
    job = stack.http.get(f"/jobs/{job_id}").json()
    assert job["name"] == "yaml-iris" and job["spec"]["search_space"]["lr"] == 0.01


def test_a_tenant_sees_no_checkpoint_path(
    stack: Stack, quick_job: dict[str, Any], page: Page
) -> None:
    """The API answers a checkpoint's server path to admins only (null to a tenant's
    key; tests/services/predictor/test_model_import.py): the model page then leaves it out. This
    stack has no keys, so the model's answer is made a tenant's on its way."""

    def as_a_tenant_sees_it(route: Route) -> None:
        answer = route.fetch()
        model = answer.json()
        model["checkpoint_uri"] = None
        route.fulfill(response=answer, json=model)

    page.route(re.compile(re.escape(stack.url) + r"/models/[0-9a-f]{32}$"), as_a_tenant_sees_it)
    page.goto(f"{stack.url}/#/models/{quick_job['id']}")
    page.locator("#predict-input").wait_for()
    assert page.locator("#model-features .chip").count() == 64
    assert page.locator("#model-checkpoint").count() == 0
    assert "Checkpoint" not in page.locator("main").inner_text()


def test_a_raw_table_shows_its_roles_and_its_model_predicts_raw_rows(
    stack: Stack, page: Page
) -> None:
    page.goto(f"{stack.url}/#/datasets")
    page.locator("#dataset-target").fill("churned")
    choose_file(page, "churn.csv", semicolon_csv(messy_frame(seed=11)))
    page.locator("#upload-button").click()
    page.locator("#dataset-summary section").wait_for()
    cells = page.locator("#dataset-columns tbody tr").evaluate_all(
        "rows => Object.fromEntries(rows.map(row => [row.dataset.column,"
        " [row.cells[2].textContent, row.cells[3].textContent, row.cells[4].textContent]]))"
    )
    assert cells["signup"][0] == "datetime" and cells["plan"][0] == "categorical"
    assert cells["customer_id"][0].startswith("ignorean identifier")
    assert int(cells["age"][1]) > 0 and cells["churned"][1] == "6"
    assert "north (" in cells["region"][2]
    assert "6 rows have no target" in page.locator("#dataset-no-target").inner_text()
    screenshot(page, "dataset-raw-table")

    dataset_id = page.evaluate("location.hash").rsplit("/", 1)[1]
    spec = {"dataset": {"upload": dataset_id}, "search_space": {"epochs": 5, "hidden_units": 16}}
    job = stack.wait_for(stack.http.post("/jobs", json=spec).json()["id"])
    assert job["state"] == "succeeded", job["error"]
    page.goto(f"{stack.url}/#/jobs/{job['id']}")
    assert page.locator("#job-rows").inner_text() == "394 rows; 6 without a target left out"
    rows = [{"region": "atlantis", "plan": None, "age": 33, "signup": "2023-01-05", "spend": 9}]
    expected = stack.http.post(f"/models/{job['id']}/predict", json={"instances": rows}).json()
    page.goto(f"{stack.url}/#/models/{job['id']}")
    textarea = page.locator("#predict-input")
    prefilled = json.loads(textarea.input_value())
    assert prefilled["region"] is None and prefilled["signup"] == "2024-01-01"
    assert "customer_id" not in prefilled  # ignored: not asked for
    textarea.fill(json.dumps(rows))
    page.locator("#predict-form button[type=submit]").click()
    prediction = page.locator("#predict-result .prediction")
    prediction.wait_for()
    assert prediction.inner_text() == expected["predictions"][0]
    screenshot(page, "model-raw-rows")
