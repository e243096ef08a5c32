"""How low-rank are the weight matrices of a checkpoint (layer 5: joins ``io`` and the core).

:func:`analyze` selects the matrices of a weight file (:func:`lowrank.io.select`), sends
one task per matrix to an executor (by default threads for a small checkpoint and worker
processes for a larger one, or a Dask cluster), each task loading its own matrix, and
gathers a :class:`Report`: per matrix the norms, stable and entropy effective ranks,
numerical ranks (NumPy's rule and the stored dtype's noise level), the rank for each energy
level, the relative error at each rank, the random-matrix view (Marchenko–Pastur edge,
spikes, power-law alpha: :class:`RandomMatrixView`, and per module type
:meth:`Report.random_matrix_summary`), and all singular values. Reports are written and
read as JSON (exactly), CSV, Markdown and ``.npz``.

Typical use::

    from lowrank.analysis import analyze
    report = analyze("model.safetensors", include="*.weight", ranks=[8, 64],
                     checkpoint="report.json")     # kept valid even if interrupted
    print(report.to_text())

:func:`start_analysis` gives the same as an iterator of results in completion order.
:func:`analyze_update` (and :func:`start_update_analysis`) does the same for the update
``ΔW = W_tuned - W_base`` of two checkpoints paired by tensor
name, adding per matrix its relative size and the LoRA paper's §7.3 view (subspace overlap
with the base weight, amplification factor): :class:`UpdateResult`.
:func:`extract_checkpoint` makes a PEFT LoRA adapter of the difference of two checkpoints.
:func:`analyze_adapter` analyses a PEFT adapter folder: the update :math:`sBA` of each
module from its thin factors, and with a base checkpoint its overlaps with the base weight (or
the merged matrices).
"""

from __future__ import annotations

from lowrank.analysis._adapter import analyze_adapter, base_weight_name
from lowrank.analysis._compute import analyze_matrix, analyze_tensor
from lowrank.analysis._executors import (
    SchedulerError,
    available_cores,
    dask_executor,
    describe_executor,
    local_executor,
    thread_executor,
)
from lowrank.analysis._extract import CheckpointExtraction, extract_checkpoint
from lowrank.analysis._layers import LayerGrid, LayerName, layer_grid, parse_layer_name
from lowrank.analysis._report import REPORT_FORMAT, REPORT_FORMAT_VERSION, Report, RunInfo
from lowrank.analysis._results import (
    DEFAULT_ENERGIES,
    DEFAULT_RANKS,
    AnalysisOptions,
    MatrixResult,
    RandomMatrixView,
    SkippedTensor,
    UpdateResult,
)
from lowrank.analysis._run import AnalysisError, AnalysisRun, Outcome, analyze, start_analysis
from lowrank.analysis._summary import RandomMatrixGroup, RandomMatrixOverview
from lowrank.analysis._update import analyze_update_matrix
from lowrank.analysis._update_run import analyze_update, start_update_analysis

__all__ = [
    "DEFAULT_ENERGIES",
    "DEFAULT_RANKS",
    "REPORT_FORMAT",
    "REPORT_FORMAT_VERSION",
    "AnalysisError",
    "AnalysisOptions",
    "AnalysisRun",
    "CheckpointExtraction",
    "LayerGrid",
    "LayerName",
    "MatrixResult",
    "Outcome",
    "RandomMatrixGroup",
    "RandomMatrixOverview",
    "RandomMatrixView",
    "Report",
    "RunInfo",
    "SchedulerError",
    "SkippedTensor",
    "UpdateResult",
    "analyze",
    "analyze_adapter",
    "analyze_matrix",
    "analyze_tensor",
    "analyze_update",
    "analyze_update_matrix",
    "available_cores",
    "base_weight_name",
    "dask_executor",
    "describe_executor",
    "extract_checkpoint",
    "layer_grid",
    "local_executor",
    "parse_layer_name",
    "start_analysis",
    "start_update_analysis",
    "thread_executor",
]
