"""Bad input from Python gets the TypeScript core's typed error, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import dreamdb_dataset as vd
from conftest import folder_listing

SCHEMA = {
    "fields": [
        {"name": "embedding", "family": "embedding", "dim": 4},
        {"name": "label", "family": "scalar", "kind": "categorical"},
    ]
}


@pytest.fixture
def ds(folder: str) -> vd.Dataset:
    ds = vd.Dataset.create("corpus", schema=SCHEMA, backend=folder)
    ds.append_many([{"embedding": np.eye(4, dtype=np.float32)[i % 4], "label": str(i % 3)} for i in range(10)])
    return ds


E = np.ones(4, np.float32)
REFUSED: list[tuple[str, Callable[[vd.Dataset], Any], str, str]] = [
    ("wrong dims", lambda ds: ds.append_many([{"embedding": [1.0, 2.0, 3.0], "label": "a"}]), "ERR_ARROW_INVALID_VALUE", "dimension 4"),
    ("NaN", lambda ds: ds.append_many([{"embedding": np.array([1, np.nan, 0, 0], np.float32), "label": "a"}]), "ERR_ARROW_INVALID_VALUE", "NaN"),
    ("strings as components", lambda ds: ds.append_many([{"embedding": ["1e3", "0", "0", "0"], "label": "a"}]), "ERR_ARROW_INVALID_VALUE", "1e3"),
    ("bools as components", lambda ds: ds.append_many([{"embedding": [True, False, 0.0, 0.0], "label": "a"}]), "ERR_ARROW_INVALID_VALUE", "true"),
    ("unknown field", lambda ds: ds.append_many([{"embedding": E, "label": "a", "colour": "red"}]), "ERR_DATASET_UNKNOWN_FIELD", "colour"),
    ("missing field", lambda ds: ds.append_many([{"embedding": E, "label": "a"}, {"embedding": E}]), "ERR_DATASET_INVALID_OPTION", "label"),
    ("label of the wrong type", lambda ds: ds.append_many([{"embedding": E, "label": 7}]), "ERR_ARROW_INVALID_VALUE", "label"),
    ("mixed types in a column", lambda ds: ds.append_many([{"embedding": E, "label": "a"}, {"embedding": E, "label": 3}]), "ERR_ARROW_INVALID_VALUE", "label"),
    ("not records", lambda ds: ds.append_many({"embedding": E}), "ERR_DATASET_INVALID_OPTION", "records"),
    ("no records", lambda ds: ds.append_many([]), "ERR_DATASET_INVALID_OPTION", "records"),
    ("bad branch name", lambda ds: ds.branch("sweep/..bad"), "ERR_MANIFEST_INVALID_REF_NAME", "..bad"),
    ("branch name ending in a dot", lambda ds: ds.branch("sweep/run."), "ERR_MANIFEST_INVALID_REF_NAME", "run."),
    ("bad snapshot label", lambda ds: ds.snapshot("has space"), "ERR_MANIFEST_INVALID_REF_NAME", "has space"),
    ("taken branch name", lambda ds: ds.branch("corpus"), "ERR_MANIFEST_REF_EXISTS", "corpus"),
    ("layer of an unknown kind", lambda ds: ds.add_scalar_layer("p", "embedding", "colour", [(1, "a")]), "ERR_MANIFEST_INVALID_SCHEMA", "colour"),
    ("layer on an unknown anchor", lambda ds: ds.add_scalar_layer("p", "embedding", "categorical", [(999, "a")]), "ERR_DATASET_INVALID_SAMPLE", "999"),
    ("negative anchor", lambda ds: ds.add_scalar_layer("p", "embedding", "categorical", [(-1, "a")]), "ERR_DATASET_INVALID_SAMPLE", "-1"),
    ("fractional anchor", lambda ds: ds.add_scalar_layer("p", "embedding", "categorical", [(1.5, "a")]), "ERR_DATASET_INVALID_SAMPLE", "1.5"),
    ("layer named as a base field", lambda ds: ds.add_scalar_layer("label", "embedding", "categorical", [(1, "a")]), "ERR_MANIFEST_INVALID_SCHEMA", "label"),
    ("embedding layer of dim 0", lambda ds: ds.add_embedding_layer(name="s", parent_field="embedding", dim=0, samples=[(1, [])]), "ERR_MANIFEST_INVALID_SCHEMA", "dim"),
    ("embedding layer with wrong dims", lambda ds: ds.add_embedding_layer(name="s", parent_field="embedding", dim=2, samples=[(1, [1.0, 2.0, 3.0])]), "ERR_ARROW_INVALID_VALUE", "dimension 2"),
    ("unknown field to iterate", lambda ds: ds.iter_arrow_batches(fields=["nope"]), "ERR_DATASET_UNKNOWN_FIELD", "nope"),
    ("batch size 0", lambda ds: ds.iter_arrow_batches(batch_size=0), "ERR_DATASET_INVALID_OPTION", "batchSize"),
    ("search of a scalar field", lambda ds: ds.search("label", E, k=1), "ERR_DATASET_INVALID_OPTION", "label"),
    ("search with k 0", lambda ds: ds.search("embedding", E, k=0), "ERR_DATASET_INVALID_OPTION", "k"),
    ("search with a string query", lambda ds: ds.search("embedding", ["a", "b", "c", "d"], k=1), "ERR_DATASET_INVALID_OPTION", "query"),
    ("drop of a layer that is not there", lambda ds: ds.drop_layer("nope"), "ERR_DATASET_INVALID_OPTION", "nope"),
    ("drop of a base field", lambda ds: ds.drop_layer("label"), "ERR_DATASET_INVALID_OPTION", "base field"),
    ("drop_field of a field that is not there", lambda ds: ds.drop_field("nope"), "ERR_DATASET_INVALID_OPTION", "nope"),
    ("merge of an unknown ref", lambda ds: ds.merge("nope"), "ERR_MANIFEST_REF_NOT_FOUND", "nope"),
    ("restore of an unknown ref", lambda ds: ds.restore("nope"), "ERR_MANIFEST_REF_NOT_FOUND", "nope"),
    ("add_fields of a name a field has", lambda ds: ds.add_fields([{"name": "label", "family": "scalar", "kind": "string"}]), "ERR_MANIFEST_INVALID_SCHEMA", "label"),
    ("search_many with one vector", lambda ds: ds.search_many("embedding", E, k=1), "ERR_DATASET_INVALID_OPTION", "queries"),
    ("search_many with no queries", lambda ds: ds.search_many("embedding", np.zeros((0, 4)), k=1), "ERR_DATASET_INVALID_OPTION", "queries"),
    ("search_many of the wrong dimension", lambda ds: ds.search_many("embedding", np.ones((2, 3)), k=1), "ERR_DATASET_INVALID_OPTION", "3 dimensions"),
]


@pytest.mark.parametrize("name, call, code, names", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_calls_are_typed_and_write_nothing(
    ds: vd.Dataset, folder: str, name: str, call: Callable[[vd.Dataset], Any], code: str, names: str
) -> None:
    before = folder_listing(folder)
    head = ds.current_manifest()
    with pytest.raises(vd.DreamDBError) as caught:
        result = call(ds)
        list(result) if isinstance(result, vd.BatchIterator) else None
    assert caught.value.code == code, f"{name}: {caught.value}"
    assert names in str(caught.value), f"{name}: the message should name {names!r}: {caught.value}"
    assert folder_listing(folder) == before, f"{name} wrote something"
    assert vd.Dataset.open_ref("corpus", backend=folder).current_manifest() == head


def test_errors_are_one_hierarchy(ds: vd.Dataset, folder: str) -> None:
    with pytest.raises(vd.NotFoundError) as missing:
        vd.Dataset.open_ref("no-such-dataset", backend=folder)
    assert missing.value.code == "ERR_MANIFEST_REF_NOT_FOUND" and isinstance(missing.value, LookupError)
    with pytest.raises(vd.InvalidInputError) as invalid:
        ds.append_many([{"embedding": [1.0], "label": "a"}])
    assert isinstance(invalid.value, ValueError) and invalid.value.details
    pinned = vd.Dataset.open_at(ds.snapshot("pinned"), backend=folder)
    with pytest.raises(vd.DreamDBError) as read_only:
        pinned.append_many([{"embedding": E, "label": "a"}])
    assert read_only.value.code == "ERR_DATASET_READ_ONLY"
    with pytest.raises(vd.ConflictError) as taken:
        vd.Dataset.create("corpus", schema=SCHEMA, backend=folder)
    assert taken.value.code == "ERR_MANIFEST_REF_EXISTS"
