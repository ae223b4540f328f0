"""The Ray cluster-launcher configs, checked offline with Ray's own code.

``prepare_config`` merges a config with the defaults Ray ships for its provider (a file
inside the ray package; nothing is asked of AWS) and ``validate_config`` checks the result
against ray/autoscaler/ray-schema.json. Neither looks inside ``provider`` or ``node_config``,
nor at what the commands do: the checks below cover what tunefleet relies on there. What
only the cloud knows (AMI, instance types, IAM, subnets) is left to ``ray up``.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.command_runner import SSHCommandRunner
from ray.autoscaler._private.util import prepare_config, validate_config

from shared.settings import Settings
from tests.helpers.ray_nodes import COMMAND_LISTS

REPO = Path(__file__).resolve().parents[2]
AWS_CONFIG = REPO / "ray-cluster.yaml"
LOCAL_CONFIG = REPO / "cluster" / "ray-cluster.local.yaml"
CONFIGS = pytest.mark.parametrize("path", [AWS_CONFIG, LOCAL_CONFIG], ids=["aws", "local"])
RAY_DEFAULT_PORT = 6379
TOKEN_FILE = "~/.ray/auth_token"
CHECKOUT = "~/tunefleet"
CPU_TORCH_INDEX = "download.pytorch.org/whl/cpu"

Config = dict[str, Any]


def load(path: Path) -> Config:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def commands(config: Config, key: str) -> list[str]:
    found = config[key]
    assert isinstance(found, list)
    assert all(isinstance(command, str) for command in found)
    return found


def one_command(config: Config, key: str, pattern: str) -> str:
    """The one command of ``config[key]`` matching ``pattern``."""
    matching = [command for command in commands(config, key) if re.search(pattern, command)]
    assert len(matching) == 1, f"{key}: {len(matching)} commands match {pattern!r}"
    return matching[0]


def env_value(command: str, name: str) -> str:
    """What ``command`` sets the variable ``name`` to (plain values only)."""
    match = re.search(rf"(?<![\w$]){name}=(\S+?);?(?=\s|$)", command)
    assert match is not None, f"{name} is not set in: {command}"
    return match.group(1).strip("'\"")


def setups_by_node_type(config: Config) -> dict[str, list[str]]:
    """The setup commands each kind of node really runs, in order.

    The head runs setup_commands then head_setup_commands; a worker type with its own
    worker_setup_commands runs those instead of setup_commands and worker_setup_commands.
    """
    prepared = prepare_config(config)
    head_type = prepared["head_node_type"]
    setups: dict[str, list[str]] = {head_type: prepared["head_setup_commands"]}
    for name, node_type in prepared["available_node_types"].items():
        if name != head_type:
            setups[name] = node_type.get("worker_setup_commands", prepared["worker_setup_commands"])
    if prepared["provider"]["type"] == "local":
        # A single node type there: the workers are of the head's type, with workers' setup.
        setups["worker"] = prepared["worker_setup_commands"]
    return setups


def install_position(setup: list[str], pattern: str) -> int:
    positions = [i for i, command in enumerate(setup) if re.search(pattern, command)]
    assert len(positions) == 1, f"{len(positions)} commands match {pattern!r}"
    return positions[0]


@CONFIGS
def test_ray_accepts_the_config(path: Path) -> None:
    validate_config(prepare_config(load(path)))


def rename_top_level(old: str, new: str) -> Callable[[Config], None]:
    def typo(config: Config) -> None:
        config[new] = config.pop(old)

    return typo


def gpu_min_workers_as_word(config: Config) -> None:
    config["available_node_types"]["gpu_worker"]["min_workers"] = "two"


def misspelt_head_node_type(config: Config) -> None:
    config["head_node_type"] = "haed"


@pytest.mark.parametrize(
    ("typo", "error", "message"),
    [
        (
            rename_top_level("available_node_types", "available_node_type"),
            jsonschema.ValidationError,
            "'available_node_type' was unexpected",
        ),
        (
            rename_top_level("max_workers", "max_worker"),
            jsonschema.ValidationError,
            "'max_worker' was unexpected",
        ),
        (gpu_min_workers_as_word, jsonschema.ValidationError, "'two' is not of type 'integer'"),
        (misspelt_head_node_type, ValueError, "must be one of `available_node_types`"),
    ],
    ids=["available_node_type", "max_worker", "min_workers-two", "head_node_type"],
)
def test_ray_rejects_a_copy_with_a_typo(
    typo: Callable[[Config], None], error: type[Exception], message: str
) -> None:
    config = copy.deepcopy(load(AWS_CONFIG))
    typo(config)
    with pytest.raises(error, match=re.escape(message)):
        validate_config(prepare_config(config))


@CONFIGS
def test_every_command_list_is_set(path: Path) -> None:
    config = load(path)
    assert [key for key in COMMAND_LISTS if key not in config] == []


@CONFIGS
def test_provider_keys_are_ones_ray_knows(path: Path) -> None:
    # The schema lets any key through in `provider`: a misspelt one would be ignored.
    schema_file = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    known = json.loads(schema_file.read_text())["properties"]["provider"]["properties"]
    assert set(load(path)["provider"]) <= set(known)


@CONFIGS
def test_every_command_is_valid_bash(path: Path) -> None:
    config = load(path)
    every = [command for key in COMMAND_LISTS for command in commands(config, key)]
    for node_type in config.get("available_node_types", {}).values():
        every += node_type.get("worker_setup_commands", [])
    for command in every:
        checked = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert checked.returncode == 0, f"{command}\n{checked.stderr}"


def test_every_node_type_declares_its_resources() -> None:
    # Declared resources are what the autoscaler plans with before a node exists.
    node_types = load(AWS_CONFIG)["available_node_types"]
    assert set(node_types) == {"head", "cpu_worker", "gpu_worker"}
    for name, node_type in node_types.items():
        assert "CPU" in node_type["resources"], name
    # Trials go to the workers; the head keeps the GCS, Redis, Serve and the drivers.
    assert node_types["head"]["resources"]["CPU"] == 0
    assert node_types["cpu_worker"]["resources"] == {"CPU": 16}


def test_the_gpu_worker_declares_its_gpu() -> None:
    gpu_worker = load(AWS_CONFIG)["available_node_types"]["gpu_worker"]
    assert gpu_worker["resources"] == {"CPU": 4, "GPU": 1}
    assert gpu_worker["node_config"]["InstanceType"] == "g5.xlarge"


def test_only_the_gpu_worker_gets_the_cuda_build_of_torch() -> None:
    for name, setup in setups_by_node_type(load(AWS_CONFIG)).items():
        torch = setup[install_position(setup, r"pip install torch==")]
        assert (CPU_TORCH_INDEX in torch) == (name != "gpu_worker"), name


def test_worker_types_repeat_the_common_setup() -> None:
    # A node type's own worker_setup_commands replaces setup_commands instead of adding to it.
    config = load(AWS_CONFIG)
    for name, setup in setups_by_node_type(config).items():
        common = commands(config, "setup_commands")
        assert setup[: len(common)] == common, name


@CONFIGS
def test_ray_starts_off_the_redis_port_and_workers_join_it(path: Path) -> None:
    config = load(path)
    head = one_command(config, "head_start_ray_commands", r"ray start --head")
    port_flag = re.search(r"--port[= ](\d+)", head)
    assert port_flag is not None, head
    port = int(port_flag.group(1))
    assert port != RAY_DEFAULT_PORT
    worker = one_command(config, "worker_start_ray_commands", r"ray start --address")
    assert f"--address=$RAY_HEAD_IP:{port}" in worker


@CONFIGS
def test_tunefleet_up_joins_that_ray_with_shared_storage(path: Path) -> None:
    config = load(path)
    up = one_command(config, "head_start_ray_commands", r"\btunefleet up\b")
    before, after = up.split("tunefleet up", 1)
    assert env_value(before, "RAY_ADDRESS") == "auto"
    # Reached through `ray attach --port-forward` (an SSH tunnel), never the open network.
    assert env_value(before, "TUNEFLEET_HTTP_HOST") == "127.0.0.1"
    # In the background: `ray up` waits for every start command to end.
    assert re.search(r"(?<![&>])&(?!&)", after), up

    storage = env_value(before, "TUNEFLEET_STORAGE")
    # The configs use a shared mount (a bucket is the other choice, see their headers).
    assert "://" not in storage, storage
    assert PurePosixPath(storage).is_absolute(), storage
    assert Settings(storage=Path(storage)).storage_root == Path(storage)


@CONFIGS
def test_the_storage_is_there_on_every_node(path: Path) -> None:
    config = load(path)
    up = one_command(config, "head_start_ray_commands", r"\btunefleet up\b")
    storage = env_value(up, "TUNEFLEET_STORAGE")
    # Mounted (AWS: EFS) or, on your own machines, checked to be mounted.
    for name, setup in setups_by_node_type(config).items():
        assert any(re.search(rf"\bmount(point)?\b.* {storage}\b", c) for c in setup), name


@CONFIGS
def test_torch_comes_before_tunefleet_on_every_node(path: Path) -> None:
    # tunefleet's torch==2.13.0, left to pip, is the multi-GB CUDA build: the build the
    # node can use must already be there when tunefleet is installed.
    for name, setup in setups_by_node_type(load(path)).items():
        torch = install_position(setup, r"pip install torch==2\.13\.0\b")
        assert torch < install_position(setup, r"pip install ~/tunefleet\b"), name


@CONFIGS
def test_every_node_holds_the_token_and_ray_start_requires_it(path: Path) -> None:
    config = load(path)
    assert config["file_mounts"][TOKEN_FILE] == TOKEN_FILE
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = one_command(config, key, r"\bray start\b")
        assert env_value(start, "RAY_AUTH_MODE") == "token", start


@CONFIGS
def test_the_checkout_is_shipped_without_what_git_ignores(path: Path, tmp_path: Path) -> None:
    """`ray up` from the repository's root copies the checkout with rsync and the config's
    own filters; the copy then installs with pip, dashboard included. Both run here as Ray
    runs them (rsync to a folder here instead of over SSH)."""
    config = load(path)
    assert config["file_mounts"][CHECKOUT] == "."
    for setup in setups_by_node_type(config).values():
        install_position(setup, r"pip install ~/tunefleet\b")  # once on every kind of node

    runner = SSHCommandRunner(
        log_prefix="", node_id="head", provider=None, auth_config=config["auth"],
        cluster_name="test",
        process_runner=subprocess, use_internal_ip=True,
    )  # fmt: skip
    options = {key: config.get(key) for key in ("rsync_exclude", "rsync_filter")}
    shipped = tmp_path / "tunefleet"
    rsync = ["rsync", "-a", *runner._create_rsync_filter_args(options), f"{REPO}/", str(shipped)]
    subprocess.run(rsync, check=True, cwd=REPO)
    names = {p.name for p in shipped.iterdir()}
    assert {"pyproject.toml", "services", "shared", "cluster", "README.md"} <= names
    assert not names & {".git", ".venv", ".tunefleet", ".pytest_cache"}, names

    target = tmp_path / "installed"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
           "--no-build-isolation", "--target", str(target), str(shipped)]  # fmt: skip
    done = subprocess.run(pip, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (target / "services" / "gateway" / "static").is_dir()
    assert (target / "bin" / "tunefleet").exists()


@CONFIGS
def test_the_head_runs_serves_haproxy_proxy(path: Path) -> None:
    # One stack per cluster, so the faster proxy. Ray's own processes read these, so
    # they belong to `ray start`, not `tunefleet up`.
    head = one_command(load(path), "head_start_ray_commands", r"ray start --head")
    assert env_value(head, "RAY_SERVE_ENABLE_HA_PROXY") == "1"
    # Serve's throughput mode, which Ray pairs with it, wherever a replica may run.
    worker = one_command(load(path), "worker_start_ray_commands", r"ray start --address")
    assert env_value(head, "RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1"
    assert env_value(worker, "RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1"
    # ... with replicas' logs in `tunefleet up`'s output, as without it.
    for command in (head, worker):
        assert env_value(command, "RAY_SERVE_LOG_TO_STDERR") == "1"
    assert float(env_value(head, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S")) <= 5
