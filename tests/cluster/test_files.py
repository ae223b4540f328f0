"""What the CLI writes for a user is whole or not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.files import written_whole


def test_an_interrupted_write_leaves_no_truncated_file_and_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    target = tmp_path / "predictions.csv"
    with pytest.raises(ConnectionError), written_whole(target) as partial:
        partial.write_text("prediction\n0\n")
        raise ConnectionError("the download broke off")
    assert not target.exists()
    target.write_text("from before\n")
    with pytest.raises(KeyboardInterrupt), written_whole(target) as partial:
        partial.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "from before\n"
    with written_whole(target) as partial:
        partial.write_text("prediction\n1\n")
    assert target.read_text() == "prediction\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]
