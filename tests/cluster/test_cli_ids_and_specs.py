"""The `tunefleet` command on a real redis-server and the gateway in process (no Ray, no
driver, so jobs stay queued): short ids, --json, 80-column tables, YAML specs."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cluster import Client
from cluster.redis_server import RedisServer
from cluster.specs import read_spec
from services.gateway.app import create_app
from shared.errors import InvalidInputError
from shared.settings import Settings
from tests.helpers.servers import served
from tests.helpers.stack import EXAMPLES, TUNEFLEET

SPEC = {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1, "hidden_units": 4}}
YAML_SPEC = """\
# A comment, which JSON has no room for.
name: yaml-iris
dataset:
  builtin: iris
search_space:
  lr: {loguniform: [1e-4, 1e-2]}
  hidden_units: {grid: [4, 8]}
  epochs: 1
search: {algorithm: random, num_samples: 2}
"""


class Cli:
    """The installed `tunefleet` command, run as a person runs it, on an 80-column
    terminal unless told otherwise."""

    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("TUNEFLEET_REDIS_URL",)},
            "TUNEFLEET_URL": url,
            "TUNEFLEET_HOME": str(home),
            "COLUMNS": "80",
        }

    def __call__(
        self, *args: str, stdin: str | None = None, columns: int = 80
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TUNEFLEET), *args], env={**self.env, "COLUMNS": str(columns)},
            input=stdin, capture_output=True, text=True, timeout=120,
        )  # fmt: skip


@pytest.fixture
def cli(redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> Iterator[Cli]:
    settings = Settings(redis_url=redis_server.url, home=tmp_path)
    with served(create_app(settings)) as url:
        yield Cli(url, tmp_path)


def submit(url: str, count: int) -> list[str]:
    with httpx.Client(base_url=url, timeout=30) as http:
        return [http.post("/jobs", json=SPEC).json()["id"] for _ in range(count)]


def flat(text: str) -> str:
    """Text as one line: rich wraps messages at the terminal's width."""
    return " ".join(text.split())


def assert_reads_at(width: int, output: str) -> None:
    """No cell cut to an ellipsis, no line past the terminal's width."""
    assert "…" not in output, output
    assert max(len(line) for line in output.splitlines()) <= width, output


def test_a_unique_prefix_names_a_job_and_an_ambiguous_one_lists_the_ids(cli: Cli) -> None:
    # 17 random ids always hold two that start with the same hex digit.
    ids = submit(cli.url, 17)
    by_first: dict[str, list[str]] = {}
    for job_id in ids:
        by_first.setdefault(job_id[0], []).append(job_id)
    shared = next(group for group in by_first.values() if len(group) > 1)

    ambiguous = cli("status", shared[0][0])
    assert ambiguous.returncode == 1
    message = flat(ambiguous.stderr)
    assert all(job_id in message for job_id in shared) and "more of the id" in message
    assert "Traceback" not in ambiguous.stderr

    prefix = shared[0][:8]
    one = cli("status", prefix, "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["id"] == shared[0]
    cancelled = cli("cancel", prefix.upper())
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"job {shared[0]} cancelled" in cancelled.stdout

    unknown = "".join("0" if c != "0" else "1" for c in shared[0][:6])
    missing = cli("results", unknown)
    assert missing.returncode == 1
    assert "no job id starts with" in flat(missing.stderr)
    assert "tunefleet jobs" in flat(missing.stderr)
    not_hex = cli("best", "my-job")
    assert not_hex.returncode == 1 and "32 hex digits" in flat(not_hex.stderr)


def test_the_jobs_table_fits_80_columns_and_json_has_the_full_ids(cli: Cli) -> None:
    ids = submit(cli.url, 3)
    table = cli("jobs")
    assert table.returncode == 0, table.stderr
    assert_reads_at(80, table.stdout)
    rows = [line for line in table.stdout.splitlines() if "queued" in line]
    assert len(rows) == 3
    # Each id cut to one length, at least 8 characters, that tells them apart.
    shown = [row.split("│")[1].strip() for row in rows]
    assert len({len(short) for short in shown}) == 1 and len(shown[0]) >= 8
    assert sorted(short for short in shown) == sorted(job_id[: len(shown[0])] for job_id in ids)
    assert len(set(shown)) == 3
    assert "--wide" in table.stdout and "priority" not in table.stdout.split("not shown")[0]

    wide = cli("jobs", "--wide")
    assert "…" not in wide.stdout and "priority" in wide.stdout and "tenant" in wide.stdout
    broad = cli("jobs", columns=200)
    assert_reads_at(200, broad.stdout)
    assert "priority" in broad.stdout and "not shown" not in broad.stdout

    listing = json.loads(cli("jobs", "--json", columns=40).stdout)
    assert [job["id"] for job in listing] == ids[::-1]  # newest first, ids in full
    assert json.loads(cli("status", "--json").stdout) == listing


def test_submit_reads_yaml_files_and_stdin(cli: Cli, tmp_path: Path) -> None:
    for name in ("spec.yaml", "spec.yml"):
        (tmp_path / name).write_text(YAML_SPEC)
        done = cli("submit", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        job = httpx.get(f"{cli.url}/jobs/{done.stdout.split()[1]}").json()
        assert job["name"] == "yaml-iris" and job["trials_total"] == 4
        # YAML 1.2's floats: 1e-4 is a number, as in JSON, not the string "1e-4".
        assert job["spec"]["search_space"]["lr"] == {"loguniform": [0.0001, 0.01]}

    for text in (YAML_SPEC, json.dumps(SPEC)):
        piped = cli("submit", "-", stdin=text)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout.startswith("job ") and "queued" in piped.stdout


def test_a_bad_spec_file_names_its_line_and_queues_nothing(cli: Cli, tmp_path: Path) -> None:
    before = len(httpx.get(f"{cli.url}/jobs").json())
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("dataset:\n  builtin: iris\nsearch_space: [epochs: 1\n")
    done = cli("submit", str(bad_yaml))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "bad.yaml is not valid YAML: line 4" in flat(done.stderr)
    assert "from line 3" in flat(done.stderr)

    bad_json = cli("submit", "-", stdin='{"dataset": {"builtin": "iris"},\n "epochs": }')
    assert bad_json.returncode == 1
    assert "stdin is not valid JSON: line 2, column 12" in flat(bad_json.stderr)

    listed = tmp_path / "list.yml"
    listed.write_text("- dataset: iris\n")
    not_a_spec = cli("submit", str(listed))
    assert not_a_spec.returncode == 1 and "holds a list, not a job spec" in flat(not_a_spec.stderr)
    missing = cli("submit", str(tmp_path / "nowhere.yaml"))
    assert missing.returncode == 1 and "No such file" in flat(missing.stderr)
    assert len(httpx.get(f"{cli.url}/jobs").json()) == before


def test_the_sdk_submits_yaml_and_takes_a_short_id(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(YAML_SPEC)
    client = Client(cli.url)
    job = client.submit(path)
    assert job.state == "queued" and job.view["spec"]["name"] == "yaml-iris"
    assert client.job(job.id[:10]).id == job.id
    path.write_text("name: [unclosed\n")
    with pytest.raises(InvalidInputError, match="line 2"):
        client.submit(str(path))


def test_the_yaml_example_is_the_json_example() -> None:
    assert read_spec(EXAMPLES / "quick.yaml") == json.loads((EXAMPLES / "quick.json").read_text())
