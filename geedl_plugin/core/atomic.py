"""Atomic outputs and early checks, so a failed or cancelled job never leaves a half file.

Everything is written to a hidden temporary file in the destination folder (same filesystem,
so the final ``os.replace`` is atomic) and renamed only when the writer finished. Sidecars that
GDAL writes beside a raster (``.aux.xml``, shapefile parts) move with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import GeedlError

# extensions whose sibling files belong to the same dataset
_SIDECARS = {
    ".shp": (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx"),
    ".tif": (".tif.aux.xml", ".tif.ovr", ".tif.msk"),
    ".tiff": (".tiff.aux.xml", ".tiff.ovr", ".tiff.msk"),
    ".gpkg": (),
}


def check_writable(path: str | Path) -> Path:
    """Fail early (before long work) when the output cannot be written."""
    path = Path(path).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise GeedlError(f"Output {path} is a folder; give a file name such as {path / 'out.tif'}.")
    if not folder.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GeedlError(f"Cannot create the output folder {folder}: {exc.strerror}. "
                             "Choose a folder you can write to.") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GeedlError(f"Cannot write to {folder}: permission denied. Choose another output folder.")
    if path.exists() and not os.access(path, os.W_OK):
        raise GeedlError(f"{path} exists and is read-only. Choose another output name.")
    return path


def _sidecar_names(path: Path) -> list[tuple[str, str]]:
    """(suffix relative to the stem or name, ...) pairs for the files that travel with ``path``."""
    return list(_SIDECARS.get(path.suffix.lower(), ()))


def _dataset_files(path: Path) -> list[Path]:
    files = [path]
    for extra in _sidecar_names(path):
        if extra.startswith(path.suffix.lower()):  # name.tif.aux.xml
            files.append(path.with_name(path.name + extra[len(path.suffix):]))
        else:  # name.shx beside name.shp
            files.append(path.with_suffix(extra))
    return files


def backup(path: str | Path) -> Path | None:
    """Copy an existing dataset (with its sidecars) to ``name.bak-YYYYmmdd-HHMMSS.ext`` (``-2``,
    ``-3``, ... when that name is taken)."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}.bak-{stamp}{path.suffix}")
    serial = 1
    while target.exists():  # two backups in one second must not overwrite the first
        serial += 1
        target = path.with_name(f"{path.stem}.bak-{stamp}-{serial}{path.suffix}")
    for source in _dataset_files(path):
        if source.exists():
            destination = target.with_name(target.stem + source.name[len(path.stem):])
            shutil.copy2(source, destination)
    return target


@contextlib.contextmanager
def atomic_path(final_path: str | Path, keep_backup: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; move it into place only on success.

    With ``keep_backup`` an existing file is copied aside first (labels the user may have edited).
    """
    final = check_writable(final_path)
    token = uuid.uuid4().hex[:8]
    tmp = final.with_name(f".{final.stem}.partial-{token}{final.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise GeedlError(f"Internal error: nothing was written for {final}")
        if keep_backup:
            backup(final)
        for source, target in zip(_dataset_files(tmp), _dataset_files(final)):
            if source.exists():
                os.replace(source, target)
            elif target.exists() and source != tmp:
                target.unlink()  # a stale sidecar of the previous version would lie about the new file
    finally:
        for leftover in _dataset_files(tmp):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
