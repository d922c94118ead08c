"""manifest.yaml: the last file of a checkpoint, naming every other file with its size and sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

__all__ = ["MANIFEST", "sha256_of", "write_manifest"]

MANIFEST = "manifest.yaml"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, info: dict[str, Any]) -> None:
    """Record every file's size and sha256 (and `info`) in `directory/manifest.yaml`."""
    files = {
        path.relative_to(directory).as_posix(): {"size": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    manifest = OmegaConf.create({**info, "files": files})
    (directory / MANIFEST).write_text(OmegaConf.to_yaml(manifest), encoding="utf-8")
