"""A write that finds no room (a full disk, a file-size limit) is a clear error, 507 over
HTTP, and leaves nothing half-written. The limit is set in a process of its own, with
RLIMIT_FSIZE, as the storage filling up would do to it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cluster.redis_server import RedisServer

UNDER_A_LIMIT = """
import json, resource, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from fastapi.testclient import TestClient
from services.gateway.app import create_app
from shared.errors import StorageFullError
from shared.settings import Settings
from shared.storage import StoragePath

home, redis_url = Path(sys.argv[1]), sys.argv[2]
kept = home / "kept.txt"
kept.write_text("as it was")
app = create_app(Settings(redis_url=redis_url, home=home))
client = TestClient(app, base_url="http://127.0.0.1")
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
answer = {}
try:
    StoragePath(kept).write_bytes(b"x" * 50_000)
except StorageFullError as exc:
    answer["error"] = str(exc)
table = b"a,b,target\\n" + b"".join(b"%d,%d,%d\\n" % (i, i % 7, i % 2) for i in range(5000))
upload = client.post("/datasets", files={"file": ("big.csv", table, "text/csv")})
answer.update(status=upload.status_code, detail=upload.json()["detail"], kept=kept.read_text())
answer["left"] = sorted(p.name for p in home.rglob("*") if p.is_file() and p.name != "kept.txt")
print(json.dumps(answer))
"""


def test_no_room_is_a_clear_error_and_a_507_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        home = tmp_path / "home"
        home.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", UNDER_A_LIMIT, str(home), server.url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.splitlines()[-1])
    assert "kept.txt failed: File too large" in answer["error"]
    assert "no room" in answer["error"]
    assert answer["kept"] == "as it was"  # the old content, whole
    assert answer["status"] == 507, answer
    assert "no room" in answer["detail"]
    assert answer["left"] == []  # no half-written upload, no temporary file
