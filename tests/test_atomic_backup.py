"""Backups of a user's file: a second backup within the same second must not replace the first."""

from __future__ import annotations

from geedl_plugin.core.atomic import backup


def test_two_backups_in_one_second_keep_both_versions(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"first")
    first = backup(model)
    model.write_bytes(b"second")
    second = backup(model)
    assert first != second
    assert first.read_bytes() == b"first" and second.read_bytes() == b"second"
    assert model.read_bytes() == b"second"


def test_backup_of_a_missing_file_is_none(tmp_path):
    assert backup(tmp_path / "absent.tif") is None
