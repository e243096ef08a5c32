"""Reading and writing weight files (layer 1': no linear algebra here).

PEFT LoRA adapter folders (``adapter_config.json`` + ``adapter_model.safetensors``) are read
and written by :mod:`lowrank.io.peft`.

Formats: ``.safetensors`` (single files and Hugging Face sharded checkpoints through their
``*.safetensors.index.json``), ``.npz`` and ``.npy``, and directories of these.

Typical use::

    sel = select("model_dir", include="*proj.weight", nd_policy="skip")
    for info in sel.matrices:          # picklable: fine to send to a worker process
        W = load_matrix(info, nd_policy=sel.nd_policy)   # stored dtype, e.g. bfloat16

Listing reads file headers only; each tensor is loaded on its own, so peak memory follows
the largest tensor rather than the file. ``safetensors`` and ``ml_dtypes`` are imported only
when a function needs them. Writes go through :func:`atomic_path`: a temporary file in the
same directory, ``fsync``, then ``os.replace``.
"""

from __future__ import annotations

from lowrank.io._atomic import atomic_path, atomic_write_bytes, atomic_write_text
from lowrank.io._dtypes import MATRIX_DTYPES
from lowrank.io._info import FileKind, TensorInfo
from lowrank.io._safetensors import read_safetensors_metadata, save_safetensors
from lowrank.io._select import (
    NDPolicy,
    Patterns,
    Selection,
    SkipCode,
    Skipped,
    load_matrix,
    matrix_shape,
    select,
)
from lowrank.io._sources import list_tensors, load_tensor, load_tensors
from lowrank.io.peft import (
    PeftAdapter,
    PeftModule,
    load_peft_adapter,
    read_peft_config,
    save_peft_adapter,
)

__all__ = [
    "MATRIX_DTYPES",
    "FileKind",
    "NDPolicy",
    "Patterns",
    "PeftAdapter",
    "PeftModule",
    "Selection",
    "SkipCode",
    "Skipped",
    "TensorInfo",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "list_tensors",
    "load_matrix",
    "load_peft_adapter",
    "load_tensor",
    "load_tensors",
    "matrix_shape",
    "read_peft_config",
    "read_safetensors_metadata",
    "save_peft_adapter",
    "save_safetensors",
    "select",
]
