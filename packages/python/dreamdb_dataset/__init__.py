"""DreamDB for Python and PyTorch: git for ML datasets.

A thin client of the TypeScript core (one Node.js bridge process per Python process, Arrow
IPC over pipes): the seed's API with its names.

>>> import dreamdb_dataset as vd
>>> ds = vd.Dataset.open_ref("imagenet-100", backend="http://localhost:9000/imagenet-100")  # doctest: +SKIP
>>> snap = ds.snapshot("model-v2-prep")                                                     # doctest: +SKIP
>>> for batch in vd.Dataset.open_at(snap, backend=ds.backend).iter_arrow_batches(          # doctest: +SKIP
...         batch_size=256, fields=["embedding", "label"], shuffle_seed=42):
...     embs = batch.column("embedding").values.to_numpy(zero_copy_only=False).reshape(batch.num_rows, -1)
"""

from ._bridge import shutdown
from .dataset import (
    DEFAULT_BACKEND,
    BatchIterator,
    Dataset,
    agreement_matrix,
    compare_refs,
    refs,
    train_embedding_codec,
)
from .errors import (
    BridgeError,
    ConflictError,
    DreamDBError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BACKEND",
    "BatchIterator",
    "BridgeError",
    "ConflictError",
    "Dataset",
    "DreamDBError",
    "IntegrityError",
    "InvalidInputError",
    "NotFoundError",
    "agreement_matrix",
    "compare_refs",
    "refs",
    "shutdown",
    "train_embedding_codec",
]
