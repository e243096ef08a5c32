"""Every public callable rejects bad arguments with a clear error (issue 11, section 2).

The sweep is generated from the ``__all__`` of the public modules, so a new public function
is swept without anyone remembering to add it: a callable with no entry in :data:`VALID`
fails with "add a valid call for X".

For each callable one *valid* call is built from a table of valid arguments by parameter
name (:data:`VALID_BY_NAME`) and a per-callable override table (:data:`VALID`). The valid
call must succeed; then each parameter in turn gets a set of bad values chosen by its kind
(from the parameter name and annotation). A bad value marked "must raise" (a wrong type,
NaN, a wrong-ndim or object array, a bogus choice, ``None`` where not optional) must raise one
of the project's errors (:class:`lowrank.errors.LowRankError`) whose message names the
parameter. A value that may be legal (``-1``, ``0``, ``inf``, an empty or complex array, a
wrong-shape array) must either raise such an error or give a finite result: no NaN or
infinity, no negative value where the valid call gave a non-negative one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib
import inspect
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lowrank.errors import LowRankError

# --------------------------------------------------------------------------------------
# What is swept
# --------------------------------------------------------------------------------------

# Public modules (no "_" in the dotted name) left out of the sweep, with the reason; every
# other public module of the package is found by walking it, so a new one is swept too.
EXCLUDED_MODULES: dict[str, str] = {
    "lowrank.cli": "the argparse front end: bad arguments are exit codes (tests/test_cli.py)",
    "lowrank.examples": "downloads example checkpoints over the network",
    "lowrank.testing.strategies": "Hypothesis strategies (tests/test_testing_strategies.py)",
    "lowrank.errors": "exception classes",
}


def swept_modules() -> tuple[str, ...]:
    """``lowrank`` and each public submodule, except :data:`EXCLUDED_MODULES`."""
    import pkgutil

    import lowrank

    names = ["lowrank"]
    for info in pkgutil.walk_packages(lowrank.__path__, "lowrank."):
        parts = info.name.split(".")[1:]
        if any(p.startswith("_") for p in parts) or info.name in EXCLUDED_MODULES:
            continue
        names.append(info.name)
    return tuple(names)


# Public callables that are deliberately not swept, with the reason. Frozen result records
# are built by the library, not by users; exceptions and typing constructs are not calls.
NOT_SWEPT: dict[str, str] = {
    # result records (frozen dataclasses the library returns)
    "OptimalityComparison": "result record",
    "RankErrorCurve": "result record",
    "SpectrumSummary": "result record",
    "SpectrumAnalysis": "result record",
    "MarchenkoPasturEdge": "result record",
    "PowerLawFit": "result record",
    "RandomMatrixSummary": "result record",
    "TruncatedSVDResult": "result record",
    "RandomizedDiagnostics": "result record",
    "Amplification": "result record",
    "ConvertedAdapter": "result record",
    "ExtractedAdapter": "result record",
    "Extraction": "result record",
    "LoRAConversion": "result record",
    "LoRAInit": "result record",
    "AdapterConfig": "result record",
    "LoRAGradients": "result record",
    "LossResult": "result record",
    "DigitsFinetune": "result record",
    "TrainResult": "result record",
    "PeftAdapter": "result record",
    "PeftModule": "result record",
    "Selection": "result record",
    "Skipped": "result record",
    "TensorInfo": "result record (built by list_tensors)",
    "AnalysisOptions": "result record (validated by analyze's ranks/energies)",
    "CheckpointExtraction": "result record",
    "LayerGrid": "result record",
    "LayerName": "result record",
    "MatrixResult": "result record",
    "RandomMatrixView": "result record",
    "RandomMatrixGroup": "result record",
    "RandomMatrixOverview": "result record",
    "Report": "result record",
    "RunInfo": "result record",
    "SkippedTensor": "result record",
    "UpdateResult": "result record",
    "LoRAFactors": "result record",
    "MatrixWithSpectrum": "result record",
    "NoisyLowRank": "result record",
    "WeightLike": "result record",
    "AnalysisRun": "built by start_analysis (keyword-only internals)",
    # abstract bases and protocols
    "Layer": "abstract base class",
    "Optimizer": "abstract base class",
    "SupportsPeftDict": "typing protocol",
    # needs a running dask scheduler
    "dask_executor": "needs a dask scheduler; its address is checked by distributed",
    # no arguments
    "available_cores": "no arguments",
    "register_profiles": "no arguments",
    "ReLU": "no arguments",
    "Tanh": "no arguments",
}


def _is_typing_construct(obj: object) -> bool:
    return not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj))


def public_callables() -> dict[str, Callable[..., Any]]:
    """``{name: callable}`` over the ``__all__`` of the modules of :func:`swept_modules`."""
    found: dict[str, Callable[..., Any]] = {}
    for modname in swept_modules():
        module = importlib.import_module(modname)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.ismodule(obj) or not callable(obj) or _is_typing_construct(obj):
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue
            if getattr(obj, "__module__", "") in EXCLUDED_MODULES:
                continue
            name = obj.__name__
            if name in found and found[name] is not obj:
                raise AssertionError(f"two public callables are both named {name}")
            found[name] = obj
    return found


# --------------------------------------------------------------------------------------
# Valid arguments
# --------------------------------------------------------------------------------------

_RNG = np.random.default_rng(1234)
MATRIX = _RNG.standard_normal((6, 5))
MATRIX_B = MATRIX + np.outer(_RNG.standard_normal(6), _RNG.standard_normal(5))
MATRIX_C = np.random.default_rng(7).standard_normal((6, 5))
SPECTRUM = np.array([3.0, 2.0, 1.0, 0.5])
LORA_A = _RNG.standard_normal((2, 5))
LORA_B = _RNG.standard_normal((6, 2))
X_BATCH = _RNG.standard_normal((3, 5))


class Context:
    """Files, directories and objects the valid calls need, built once per session."""

    def __init__(self, root: Path) -> None:
        from lowrank.io import save_safetensors

        self.root = root
        self.weights = root / "weights.safetensors"
        save_safetensors(
            self.weights,
            {
                "model.layers.0.self_attn.q_proj.weight": MATRIX.astype(np.float32),
                "model.layers.1.self_attn.q_proj.weight": MATRIX_B.astype(np.float32),
            },
        )
        self.tuned = root / "tuned.safetensors"
        save_safetensors(
            self.tuned,
            {
                "model.layers.0.self_attn.q_proj.weight": MATRIX_B.astype(np.float32),
                "model.layers.1.self_attn.q_proj.weight": MATRIX.astype(np.float32),
            },
        )
        self.counter = 0

    def fresh(self, suffix: str = "") -> Path:
        self.counter += 1
        return self.root / f"out{self.counter}{suffix}"

    def peft_dir(self) -> Path:
        from lowrank.io import save_peft_adapter

        d = self.fresh()
        save_peft_adapter(d, {"fc": (LORA_A, LORA_B)}, {"r": 2, "lora_alpha": 4})
        return d

    def tensor_info(self) -> Any:
        from lowrank.io import list_tensors

        return list_tensors(self.weights)[0]

    def report(self) -> Any:
        from lowrank.analysis import analyze

        return analyze(self.weights, ranks=(1, 2), energies=(0.9,))

    def matrix_result(self) -> Any:
        from lowrank.analysis import analyze_matrix

        return analyze_matrix(MATRIX, name="model.layers.0.self_attn.q_proj.weight")

    def update_result(self) -> Any:
        from lowrank.analysis import analyze_update_matrix

        # A full-rank update: its overlaps are defined at every rank.
        return analyze_update_matrix(
            MATRIX + 0.5 * MATRIX_C, MATRIX, name="model.layers.0.self_attn.q_proj.weight"
        )


def _network(*, forward: bool = False) -> Any:
    from lowrank.adapter import LoRALinear
    from lowrank.adapter.nn import Linear, Network, ReLU

    lora = LoRALinear.from_factors(np.eye(6), LORA_B.T, LORA_B, alpha=4.0)
    net = Network([Linear(MATRIX), ReLU(), lora])
    if forward:
        net.forward(X_BATCH)
    return net


# Valid values by parameter name; callables get the Context.
VALID_BY_NAME: dict[str, Any] = {
    "A": MATRIX,
    "W": MATRIX,
    "X1": LORA_A,
    "X2": LORA_A[::-1] + 0.1,
    "Q": np.linalg.qr(MATRIX)[0],
    "S": SPECTRUM,
    "singular_values": SPECTRUM,
    "rank": 2,
    "rng": 0,
    "shape": (6, 5),
    "norm_fro": 4.0,
    "storage_dtype": "bfloat16",
    "dtype": np.float64,
    "lora_A": LORA_A,
    "lora_B": LORA_B,
    "weight": MATRIX,
    "x": X_BATCH,
    "scaling": 2.0,
    "alpha": 4.0,
    "source": lambda ctx: ctx.weights,
    "path": lambda ctx: ctx.fresh(".bin"),
    "directory": lambda ctx: ctx.peft_dir(),
    "info": lambda ctx: ctx.tensor_info(),
    "energy": 0.9,
    "name": "model.layers.0.self_attn.q_proj",
}


def ctx_first_name(ctx: Context) -> str:
    return str(ctx.report().matrices[0].name)


def _valid_svd(ctx: Context) -> Any:
    from lowrank import truncated_svd

    return truncated_svd(MATRIX, 2)


# Per-callable overrides: {param: value or callable(ctx)}. Every swept callable needs an
# entry, even an empty one, so that a new public function is looked at by someone.
VALID: dict[str, dict[str, Any]] = {
    # svd
    "truncated_svd": {"norm_fro": float(np.linalg.norm(MATRIX))},
    "singular_values": {},
    "auto_method": {},
    "default_block_size": {},
    "default_tol": {},
    "fix_signs": {
        "U": np.linalg.svd(MATRIX, full_matrices=False)[0],
        "S": np.linalg.svd(MATRIX, full_matrices=False)[1],
        "Vh": np.linalg.svd(MATRIX, full_matrices=False)[2],
    },
    # approx, curves, metrics
    "best_approximation": {},
    "compare_to_optimal": {"candidate": _valid_svd},
    "eym_error": {},
    "residual_norm": {"candidate": _valid_svd},
    "rank_error_curve": {},
    "select_rank": {"energy": 0.9},
    "condition_number": {},
    "entropy_effective_rank": {},
    "nuclear_norm": {},
    "spectral_norm": {},
    "stable_rank": {},
    "numerical_rank": {},
    "spectrum_summary": {},
    "storage_noise_level": {"norm_fro": 3.0},
    # rmt
    "marchenko_pastur_edge": {"shape": (6, 4)},
    "marchenko_pastur_median": {},
    "power_law_fit": {},
    "random_matrix_summary": {},
    # lora
    "LoRAConfig": {"r": 4, "lora_alpha": 8.0, "rank_pattern": {"v_proj": 2}},
    "anchored_patterns": {"values": {"q_proj": 2}, "names": ["model.q_proj", "model.k_proj"]},
    "pattern_key": {"patterns": ["q_proj", "v_proj"], "name": "model.q_proj"},
    "convert_pissa_adapter": {
        "trained": {"fc": (LORA_A + 0.1, LORA_B)},
        "initial": {"fc": (LORA_A, LORA_B)},
        "config": lambda ctx: __import__("lowrank.lora").lora.LoRAConfig(r=2, lora_alpha=2.0),
    },
    "factored_svd": {},
    "pissa_to_lora": {"initial_A": LORA_A, "initial_B": LORA_B, "lora_A": LORA_A + 0.1},
    "extract": {"W_base": MATRIX, "W_tuned": MATRIX_B, "rank": 1},
    "extract_many": {"layers": {"q": (MATRIX, MATRIX_B)}, "rank": 1},
    "init_factors": {},
    "lora_init": {},
    "milora_init": {},
    "olora_init": {},
    "pissa_init": {},
    "lora_scaling": {},
    "alpha_for_scaling": {},
    "default_alpha": {},
    "split_triplets": {"U": LORA_B, "S": np.array([2.0, 1.0]), "Vh": LORA_A},
    "amplification_factor": {"delta_W": (LORA_A, LORA_B)},
    "subspace_similarity": {"i": 1, "j": 1},
    "subspace_similarity_grid": {},
    # adapter
    "GELU": {},
    "SGD": {"lr": 0.1},
    "AdamW": {},
    "GradualUnfreezing": {},
    "L2SP": {"anchor": {"w": np.ones(3)}, "strength": 0.5},
    "SlantedTriangular": {"lr_max": 0.1, "total_steps": 10},
    "discriminative_lr_multipliers": {"network": lambda ctx: _network()},
    "Linear": {"bias": np.zeros(6)},
    "LoRALinear": {"bias": np.zeros(6)},
    "Network": {"layers": lambda ctx: _network().layers},
    "dropout_mask": {"shape": (3, 4), "p": 0.5},
    "evaluate": {
        "network": lambda ctx: _network(),
        "x": X_BATCH,
        "y": np.zeros((3, 6)),
        "loss": "mse",
    },
    "train": {
        "network": lambda ctx: _network(),
        "x": X_BATCH,
        "y": np.zeros((3, 6)),
        "loss": "mse",
        "optimizer": lambda ctx: __import__("lowrank.adapter.nn").adapter.nn.SGD(0.01),
        "epochs": 2,
        "schedule": lambda ctx: __import__("lowrank.adapter.nn").adapter.nn.GradualUnfreezing(),
        "lr_schedule": lambda ctx: __import__("lowrank.adapter.nn").adapter.nn.SlantedTriangular(
            0.01, 2
        ),
        "penalty": lambda ctx: __import__("lowrank.adapter.nn").adapter.nn.L2SP(
            {"0.weight": MATRIX}, strength=0.1
        ),
    },
    "lora_backward": {"grad_output": np.ones((3, 6)), "weight_grad": True},
    "lora_delta_weight": {},
    "lora_forward": {"bias": np.zeros(6)},
    "mse_loss": {"prediction": np.ones((3, 2)), "target": np.zeros((3, 2))},
    "softmax_cross_entropy": {"logits": np.ones((3, 4)), "labels": np.array([0, 1, 3])},
    # io
    "atomic_path": {"path": lambda ctx: ctx.fresh(".txt")},
    "atomic_write_bytes": {"data": b"abc"},
    "atomic_write_text": {"text": "abc"},
    "list_tensors": {"path": lambda ctx: ctx.weights},
    "load_matrix": {},
    "load_peft_adapter": {},
    "load_tensor": {},
    "load_tensors": {"path": lambda ctx: ctx.weights},
    "matrix_shape": {},
    "read_peft_config": {},
    "read_safetensors_metadata": {"path": lambda ctx: ctx.weights},
    "save_peft_adapter": {
        "directory": lambda ctx: ctx.fresh(),
        "modules": {"fc": (LORA_A, LORA_B)},
        "config": {"r": 2, "lora_alpha": 4},
    },
    "save_safetensors": {
        "path": lambda ctx: ctx.fresh(".safetensors"),
        "tensors": {"w": MATRIX},
        "metadata": {"k": "v"},
    },
    "select": {},
    # examples_digits (a second of training per valid call; bad arguments fail first)
    "make_digits_finetune": {"directory": lambda ctx: ctx.fresh()},
    # analysis
    "analyze": {"ranks": (1, 2), "energies": (0.9,)},
    "start_analysis": {"ranks": (1, 2), "energies": (0.9,)},
    "analyze_matrix": {},
    "analyze_tensor": {},
    "analyze_adapter": {
        "adapter_dir": lambda ctx: ctx.peft_dir(),
        "ranks": (1, 2),
        "energies": (0.9,),
    },
    "base_weight_name": {"module": "fc", "base_names": ["fc.weight"]},
    "analyze_update": {
        "tuned": lambda ctx: ctx.tuned,
        "base": lambda ctx: ctx.weights,
        "ranks": (1, 2),
        "energies": (0.9,),
    },
    "start_update_analysis": {
        "tuned": lambda ctx: ctx.tuned,
        "base": lambda ctx: ctx.weights,
        "ranks": (1, 2),
        "energies": (0.9,),
    },
    # A full-rank update: overlaps at ranks above the update's rank are undefined (NaN).
    "analyze_update_matrix": {"tuned": MATRIX + 0.5 * MATRIX_C, "base": MATRIX},
    "describe_executor": {"executor": lambda ctx: _thread_pool()},
    "extract_checkpoint": {
        "base": lambda ctx: ctx.weights,
        "tuned": lambda ctx: ctx.tuned,
        "rank": 1,
    },
    "layer_grid": {"results": lambda ctx: [ctx.matrix_result()]},
    "local_executor": {"workers": 1, "threads_per_worker": 1},
    "thread_executor": {"workers": 1, "threads_per_worker": 1},
    "parse_layer_name": {},
    # plot
    "curve_colors": {"count": 3},
    "plot_alpha_summary": {"data": lambda ctx: ctx.report()},
    "plot_curves": {"data": lambda ctx: ctx.report()},
    "plot_eigenvalues": {"data": lambda ctx: ctx.matrix_result()},
    "plot_heatmap": {"data": lambda ctx: ctx.report()},
    "plot_overlap": {"data": lambda ctx: [ctx.update_result()]},
    "plot_report": {"data": lambda ctx: ctx.report(), "kind": "curves"},
    "plot_spectra": {"data": lambda ctx: ctx.report()},
    "plot_update_spectra": {"data": lambda ctx: [ctx.update_result()]},
    "save_figure": {"fig": lambda ctx: _figure(), "path": lambda ctx: ctx.fresh(".png")},
    # testing
    "assert_adapters_agree": {
        "first": lambda ctx: lambda x: x @ MATRIX.T,
        "second": lambda ctx: lambda x: x @ MATRIX.T,
        "in_features": 5,
    },
    "assert_lora_reconstruction": {
        "W_res": MATRIX - 2.0 * LORA_B @ LORA_A,
        "A": LORA_A,
        "B": LORA_B,
    },
    "assert_near_optimal": {"candidate": _valid_svd},
    "assert_orthonormal": {},
    "assert_singular_values_close": {
        "actual": SPECTRUM,
        "expected": SPECTRUM,
        "size": 6,
    },
    "assert_valid_svd": {"result": _valid_svd},
    "load_profile": {"name": "dev"},
    "matrix_with_spectrum": {},
    "haar_orthonormal": {"n": 5, "k": 2},
    "householder_orthonormal": {"n": 3, "k": 1, "vectors": [np.array([1.0, 2.0, 2.0])]},
    "random_lora_factors": {"out_features": 6, "in_features": 5},
    "weight_like_matrix": {"spikes": (5.0,)},
    "coarsest_eps": {"*dtypes": (np.float32, np.float64)},
    "norm_tolerance": {"sigma_1": 3.0},
    "subspace_tolerance": {"residual_tolerance": 1e-8, "gap": 0.5},
    "svd_tolerance": {"sigma_1": 3.0},
    "backward_error_tolerance": {"sigma_1": 3.0},
    "gram_atol": {},
    "lapack_deflation_tolerance": {},
    "norm_multiplier": {},
    "power_scheme_factor": {"n_iter": 2},
    "tolerance_for": {"*dtypes": (np.float64,), "size": 6},
    "orthonormality_tolerance": {"dtype": np.float16, "m": 8},
    "storage_unit_roundoff": {"dtype": np.float16},
    "storage_error": {"x": np.ones((3, 2), dtype=np.float16)},
    "product_storage_error": {
        "*factors": (np.ones((3, 2), dtype=np.float16), np.ones((2, 4), dtype=np.float16))
    },
}

# Methods swept through an instance: {"Class.method": (instance factory, overrides)}.
METHODS: dict[str, tuple[Callable[[Context], Any], dict[str, Any]]] = {
    "LoRALinear.from_factors": (
        lambda ctx: __import__("lowrank.adapter").adapter.LoRALinear,
        {"weight": MATRIX, "alpha": 4.0},
    ),
    "LoRALinear.from_init": (
        lambda ctx: __import__("lowrank.adapter").adapter.LoRALinear,
        {"init": lambda ctx: __import__("lowrank.lora").lora.pissa_init(MATRIX, 2)},
    ),
    "LoRALinear.from_extraction": (
        lambda ctx: __import__("lowrank.adapter").adapter.LoRALinear,
        {
            "extraction": lambda ctx: __import__("lowrank.lora").lora.extract(
                MATRIX, MATRIX_B, rank=1
            ),
            "W_base": MATRIX,
        },
    ),
    "LoRALinear.add_adapter": (
        lambda ctx: __import__("lowrank.adapter").adapter.LoRALinear(MATRIX),
        {"name": "extra", "alpha": 4.0},
    ),
    "LoRALinear.forward": (
        lambda ctx: __import__("lowrank.adapter").adapter.LoRALinear.from_factors(
            MATRIX, LORA_A, LORA_B, alpha=4.0, dropout=0.1
        ),
        {"training": True},
    ),
    "Network.forward": (lambda ctx: _network(), {"x": X_BATCH}),
    "Network.with_head": (
        lambda ctx: _network(),
        {"head": lambda ctx: __import__("lowrank.adapter.nn").adapter.nn.Linear(MATRIX.T)},
    ),
    "L2SP.value": (
        lambda ctx: __import__("lowrank.adapter.nn").adapter.nn.L2SP({"w": np.ones(3)}, 0.5),
        {"params": {"w": np.zeros(3)}},
    ),
    "L2SP.gradient": (
        lambda ctx: __import__("lowrank.adapter.nn").adapter.nn.L2SP({"w": np.ones(3)}, 0.5),
        {"params": {"w": np.zeros(3)}},
    ),
    "LoRAConfig.rank_for": (
        lambda ctx: __import__("lowrank.lora").lora.LoRAConfig(r=4, lora_alpha=8.0),
        {},
    ),
    "MatrixResult.rank_for_energy": (lambda ctx: ctx.matrix_result(), {}),
    "MatrixResult.error_at_rank": (lambda ctx: ctx.matrix_result(), {"rank": 8}),
    "Report.to_text": (lambda ctx: ctx.report(), {}),
    "Report.random_matrix_summary": (lambda ctx: ctx.report(), {}),
    "Report.result": (lambda ctx: ctx.report(), {"name": ctx_first_name}),
    "Report.write_json": (lambda ctx: ctx.report(), {"path": lambda ctx: ctx.fresh(".json")}),
    "Report.write_csv": (lambda ctx: ctx.report(), {"path": lambda ctx: ctx.fresh(".csv")}),
    "Report.write_markdown": (lambda ctx: ctx.report(), {"path": lambda ctx: ctx.fresh(".md")}),
    "Report.write_spectra": (lambda ctx: ctx.report(), {"path": lambda ctx: ctx.fresh(".npz")}),
    "Report.from_json": (
        lambda ctx: __import__("lowrank.analysis").analysis.Report,
        {"text": lambda ctx: ctx.report().to_json()},
    ),
    "Report.read_json": (
        lambda ctx: __import__("lowrank.analysis").analysis.Report,
        {"path": lambda ctx: _written_report(ctx)},
    ),
    "MatrixResult.from_dict": (
        lambda ctx: __import__("lowrank.analysis").analysis.MatrixResult,
        {"data": lambda ctx: ctx.matrix_result().to_dict()},
    ),
    "LoRAConfig.alpha_for": (
        lambda ctx: __import__("lowrank.lora").lora.LoRAConfig(r=4, lora_alpha=8.0),
        {},
    ),
    "LoRAConfig.scaling_for": (
        lambda ctx: __import__("lowrank.lora").lora.LoRAConfig(r=4, lora_alpha=8.0),
        {},
    ),
    "LoRAConfig.from_peft_dict": (
        lambda ctx: __import__("lowrank.lora").lora.LoRAConfig,
        {"config": {"r": 8, "lora_alpha": 16}},
    ),
    "LoRALinear.set_active_adapters": (lambda ctx: _lora_layer(), {"names": ["default"]}),
    "LoRALinear.merge": (lambda ctx: _lora_layer(), {"adapter_names": ["default"]}),
    "LoRALinear.delta_weight": (lambda ctx: _lora_layer(), {"name": "default"}),
    "LoRALinear.adapter_config": (lambda ctx: _lora_layer(), {"name": "default"}),
    "LoRALinear.freeze": (lambda ctx: _lora_layer(), {"names": ["lora_A.default.weight"]}),
    "LoRALinear.unfreeze": (lambda ctx: _lora_layer(), {"names": ["base_layer.weight"]}),
    "LoRALinear.requires_grad": (lambda ctx: _lora_layer(), {"name": "base_layer.weight"}),
    "LoRALinear.load_parameters": (
        lambda ctx: _lora_layer(),
        {"values": {"base_layer.weight": MATRIX}},
    ),
    "LoRALinear.backward": (
        lambda ctx: _lora_layer(forward=True),
        {"grad_output": np.ones((3, 6))},
    ),
    "Network.backward": (lambda ctx: _network(forward=True), {"grad_output": np.ones((3, 6))}),
    "Network.load_parameters": (
        lambda ctx: _network(),
        {"values": lambda ctx: _network().parameters()},
    ),
    "SGD.step": (
        lambda ctx: __import__("lowrank.adapter.nn").adapter.nn.SGD(0.1),
        {"params": {"w": np.ones(3)}, "grads": {"w": np.ones(3)}},
    ),
    "AdamW.step": (
        lambda ctx: __import__("lowrank.adapter.nn").adapter.nn.AdamW(),
        {"params": {"w": np.ones(3)}, "grads": {"w": np.ones(3)}},
    ),
}


def _lora_layer(*, forward: bool = False) -> Any:
    from lowrank.adapter import LoRALinear

    layer = LoRALinear.from_factors(MATRIX, LORA_A, LORA_B, alpha=4.0)
    if forward:
        layer.forward(X_BATCH)
    return layer


def _written_report(ctx: Context) -> Path:
    path = ctx.fresh(".json")
    ctx.report().write_json(path)
    return path


def _thread_pool() -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(1)


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure()


# --------------------------------------------------------------------------------------
# Bad values by kind
# --------------------------------------------------------------------------------------

MUST = True  # the value is never legal: the call must raise
MAYBE = False  # the value may be legal: raise, or return a finite result

NAN = float("nan")
MISSING = object()  # a path in a directory that does not exist (under the session's tmp dir)
INF = float("inf")


def _bad_matrix(valid: Any) -> list[tuple[str, Any, bool]]:
    arr = np.asarray(valid, dtype=float)
    return [
        ("'x'", "x", MUST),
        ("3-D", arr[None], MUST),
        ("1-D", arr.ravel(), MUST),
        ("NaN", np.where(np.arange(arr.size).reshape(arr.shape) == 0, NAN, arr), MUST),
        ("object", arr.astype(object), MUST),
        ("strings", np.full(arr.shape, "a"), MUST),
        ("ragged", [[1.0, 2.0], [3.0]], MUST),
        ("empty", np.zeros((0, arr.shape[1])), MAYBE),
        ("complex", arr + 1j, MAYBE),
        ("wrong shape", np.ones((arr.shape[0] + 1, arr.shape[1] + 2)), MAYBE),
    ]


def _bad_batch(valid: Any) -> list[tuple[str, Any, bool]]:
    """Inputs of layers: ``(..., features)``, so 1-D and 3-D arrays may be legal."""
    arr = np.asarray(valid, dtype=float)
    return [
        ("'x'", "x", MUST),
        ("NaN", np.where(np.arange(arr.size).reshape(arr.shape) == 0, NAN, arr), MUST),
        ("object", arr.astype(object), MUST),
        ("strings", np.full(arr.shape, "a"), MUST),
        ("ragged", [[1.0, 2.0], [3.0]], MUST),
        ("3-D", arr[None], MAYBE),
        ("1-D", arr[0], MAYBE),
        ("empty", np.zeros((0, arr.shape[-1])), MAYBE),
        ("complex", arr + 1j, MAYBE),
        ("wrong features", np.ones((arr.shape[0], arr.shape[-1] + 2)), MAYBE),
    ]


def _bad_vector(valid: Any) -> list[tuple[str, Any, bool]]:
    arr = np.asarray(valid, dtype=float)
    return [
        ("'x'", "x", MUST),
        ("2-D", arr[None], MUST),
        ("NaN", np.concatenate([[NAN], arr[1:]]), MUST),
        ("object", arr.astype(object), MUST),
        ("ragged", [[1.0, 2.0], [3.0]], MUST),
        ("empty", np.zeros(0), MAYBE),
        ("negative", -arr, MAYBE),
        ("complex", arr + 1j, MAYBE),
    ]


BAD_BY_KIND: dict[str, list[tuple[str, Any, bool]]] = {
    "int": [
        ("'x'", "x", MUST),
        ("2.5", 2.5, MUST),
        ("True", True, MUST),
        ("NaN", NAN, MUST),
        ("-1", -1, MAYBE),
        ("0", 0, MAYBE),
    ],
    "float": [
        ("'x'", "x", MUST),
        ("NaN", NAN, MUST),
        ("True", True, MUST),
        ("inf", INF, MAYBE),
        ("-1.0", -1.0, MAYBE),
        ("0.0", 0.0, MAYBE),
    ],
    "bool": [("'x'", "x", MUST), ("2", 2, MUST)],
    "choice": [("'bogus'", "bogus", MUST), ("3", 3, MUST)],
    "str": [("3", 3, MUST), ("''", "", MAYBE)],
    "rng": [("'x'", "x", MUST), ("-1", -1, MUST), ("1.5", 1.5, MUST)],
    "shape": [
        ("(3,)", (3,), MUST),
        ("(-1, 5)", (-1, 5), MUST),
        ("'x'", "x", MUST),
        ("(2.5, 3)", (2.5, 3), MUST),
        ("(True, 3)", (True, 3), MUST),
    ],
    # None is NumPy's float64, so not in the list.
    "dtype": [("'bogus'", "bogus", MUST), ("object", object, MUST), ("3", 3, MUST)],
    "mapping": [("'x'", "x", MUST), ("[1, 2]", [1, 2], MUST)],
    "callable": [("'x'", "x", MUST), ("3", 3, MUST)],
    "path": [("3", 3, MUST), ("missing", MISSING, MAYBE)],
    "object": [("'x'", "x", MUST), ("3", 3, MUST)],
    "int_sequence": [("'x'", "x", MUST), ("[-1]", [-1], MUST), ("[1.5]", [1.5], MUST)],
    "float_sequence": [("'x'", "x", MUST), ("[NaN]", [NAN], MUST), ("[2.0]", [2.0], MAYBE)],
    "patterns": [("3", 3, MUST), ("[3]", [3], MUST)],
    "str_sequence": [("3", 3, MUST), ("[3]", [3], MUST)],
    "beta_pair": [
        ("'x'", "x", MUST),
        ("(0.9,)", (0.9,), MUST),
        ("(NaN, 0.999)", (NAN, 0.999), MUST),
        ("(1.5, 0.999)", (1.5, 0.999), MUST),
    ],
    "init_weights": [("3", 3, MUST), ("'bogus'", "bogus", MAYBE)],
    "any": [],
}

# Kinds by parameter name (wins over the annotation).
KIND_BY_NAME: dict[str, str] = {
    "shape": "shape",
    "storage_dtype": "dtype",
    "dtype": "dtype",
    "rng": "rng",
    "include": "patterns",
    "exclude": "patterns",
    "ranks": "int_sequence",
    "energies": "float_sequence",
    "patterns": "str_sequence",
    "adapter_names": "str_sequence",
    "params": "mapping",
    "grads": "mapping",
    "names": "str_sequence",
    "candidate": "object",
    "delta_W": "object",
    "result": "object",
    "network": "object",
    "optimizer": "object",
    "schedule": "callable",
    "lr_schedule": "callable",
    "penalty": "object",
    "head": "object",
    "anchor": "mapping",
    "lr_multipliers": "mapping",
    "executor": "object",
    "info": "object",
    "data": "object",
    "fig": "object",
    "config": "object",
    "layers": "object",
    "results": "object",
    "first": "callable",
    "second": "callable",
    "modules": "mapping",
    "trained": "mapping",
    "initial": "mapping",
    "tensors": "mapping",
    "metadata": "mapping",
    "values": "mapping",
    "vectors": "object",
    "labels": "vector",
    "spikes": "vector",
    "betas": "beta_pair",
    "rank_pattern": "mapping",
    "alpha_pattern": "mapping",
    "target_modules": "patterns",
    "init_lora_weights": "init_weights",
    "nd_policy": "choice",
    "on_result": "callable",
    "options": "object",
    "inputs": "batch",
    "dropout_mask": "batch",
    "ax": "object",
    "text": "str",
    "extract_many.rank": "int",
    "data_bytes": "any",
}

MATRIX_NAMES = {
    "A",
    "W",
    "W_base",
    "W_tuned",
    "W_res",
    "B",
    "U",
    "Vh",
    "Q",
    "X1",
    "X2",
    "lora_A",
    "lora_B",
    "initial_A",
    "initial_B",
    "weight",
    "prediction",
    "target",
    "logits",
    "grad_output",
    "y",
}
ARRAY_KINDS = ("matrix", "vector", "batch")
VECTOR_NAMES = {"S", "singular_values", "actual", "expected", "bias"}


def kind_of(name: str, param: inspect.Parameter, label: str = "") -> str:
    ann = str(param.annotation)
    if f"{label}.{name}" in KIND_BY_NAME:
        return KIND_BY_NAME[f"{label}.{name}"]
    if name in KIND_BY_NAME:
        return KIND_BY_NAME[name]
    if name in MATRIX_NAMES:
        return "matrix"
    if name in VECTOR_NAMES:
        return "vector"
    if "Literal" in ann or name in {"method", "norm", "criterion", "side", "kind", "loss", "init"}:
        return "choice"
    if "PathLike" in ann or name in {"path", "directory", "source", "base", "tuned"}:
        return "path"
    core = ann.replace(" | None", "").replace("None | ", "")
    if core == "bool" or core == "bool | None":
        return "bool"
    if core in {"int"}:
        return "int"
    if core in {"float", "float | int"}:
        return "float"
    if core == "str":
        return "str"
    if name == "x":
        return "batch"
    return "any"


def optional(param: inspect.Parameter) -> bool:
    return "None" in str(param.annotation) or param.default is None


# Names a message may use for a parameter: {(callable, parameter): names}. File contents
# are named by what they are ("report", as ``where`` says), not by the variable holding them.
ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Report.from_json", "text"): ("report",),
    ("Report.read_json", "path"): ("report file",),
    # A missing checkpoint source is reported by lowrank.io ("path must be an existing file or
    # directory; got '...'"), the message the CLI tests pin.
    ("analyze", "source"): ("path",),
    ("start_analysis", "source"): ("path",),
}


def _names_param(message: str, name: str, label: str = "") -> bool:
    for alias in (name, *ALIASES.get((label, name), ())):
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(alias)}(?![A-Za-z0-9_])", message):
            return True
    return False


# --------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx() -> Iterator[Context]:
    with tempfile.TemporaryDirectory() as root:
        yield Context(Path(root))


def _copy(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:  # executors, locks: shared, not copied
        return value


def _resolve(value: Any, ctx: Context) -> Any:
    if callable(value) and getattr(value, "__name__", "") in (
        "<lambda>",
        "_valid_svd",
        "ctx_first_name",
    ):
        return value(ctx)
    return _copy(value)


def _signature(func: Callable[..., Any]) -> inspect.Signature:
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    return sig.replace(parameters=params)


def valid_arguments(
    label: str, func: Callable[..., Any], overrides: dict[str, Any], ctx: Context
) -> tuple[list[Any], dict[str, Any], inspect.Signature]:
    sig = _signature(func)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, param in sig.parameters.items():
        if param.kind is param.VAR_POSITIONAL:
            args.extend(_resolve(v, ctx) for v in overrides.get("*" + name, ()))
            continue
        if param.kind is param.VAR_KEYWORD:
            continue
        if name in overrides:
            value = _resolve(overrides[name], ctx)
        elif param.default is not param.empty:
            continue
        elif name in VALID_BY_NAME:
            value = _resolve(VALID_BY_NAME[name], ctx)
        else:
            pytest.fail(f"add a valid call for {label}: no valid value for parameter {name!r}")
        if param.kind is param.POSITIONAL_ONLY or (
            param.kind is param.POSITIONAL_OR_KEYWORD and param.default is param.empty
        ):
            args.append(value)
        else:
            kwargs[name] = value
    return args, kwargs, sig


def _finish_result(result: Any) -> Any:
    """Enter context managers, shut executors down, close figures; return the value."""
    if isinstance(result, contextlib.AbstractContextManager) and not isinstance(
        result, (Path, Executor)
    ):
        with result as value:
            return value
    if hasattr(result, "shutdown") and callable(result.shutdown):
        result.shutdown(wait=True)
    if hasattr(result, "close") and callable(result.close) and hasattr(result, "report"):
        result.close()
    if type(result).__name__ == "Figure":
        import matplotlib.pyplot as plt

        plt.close(result)
    return result


def _floats(value: Any, depth: int = 0) -> Iterator[float]:
    """Every float in a result (arrays, dataclass fields, tuples, dicts), a few levels deep."""
    if depth > 3 or value is None or isinstance(value, (bool, str, bytes)):
        return
    if isinstance(value, (float, np.floating)):
        yield float(value)
    elif isinstance(value, np.ndarray):
        if value.dtype.kind in "fc" and value.size:
            yield float(np.min(np.abs(value)) if value.dtype.kind == "c" else np.min(value))
            yield float(np.max(np.abs(value)))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _floats(getattr(value, field.name), depth + 1)
    elif isinstance(value, (tuple, list)):
        for item in value[:16]:
            yield from _floats(item, depth + 1)
    elif isinstance(value, dict):
        for item in list(value.values())[:16]:
            yield from _floats(item, depth + 1)


def _call(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    with np.errstate(all="ignore"):
        return _finish_result(func(*args, **kwargs))


def _cases() -> list[str]:
    return sorted(public_callables()) + sorted(METHODS)


def _target(label: str, ctx: Context) -> tuple[Callable[..., Any], dict[str, Any]]:
    if label in METHODS:
        factory, overrides = METHODS[label]
        method = label.split(".", 1)[1]
        bound = getattr(factory(ctx), method)

        # A fresh instance for every call: methods may change it (add_adapter, merge).
        @functools.wraps(bound)
        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(factory(ctx), method)(*args, **kwargs)

        return call, overrides
    if label in NOT_SWEPT:
        pytest.skip(f"{label}: {NOT_SWEPT[label]}")
    if label not in VALID:
        pytest.fail(f"add a valid call for {label} to VALID in tests/test_bad_arguments.py")
    return public_callables()[label], VALID[label]


# Bad values that the sweep must not try for a parameter, with the reason.
LEGAL: dict[tuple[str, str], str] = {
    ("dropout_mask", "shape=(3,)"): "a mask of any shape",
}

# Failures known and left to the modules' owners: {(callable, parameter): reason}.
KNOWN: dict[tuple[str, str], str] = {}


def sweep(label: str, ctx: Context) -> tuple[int, list[str]]:
    """Run the valid call and every bad call of ``label``; return (bad calls, problems)."""
    func, overrides = _target(label, ctx)
    args, kwargs, sig = valid_arguments(label, func, overrides, ctx)
    try:
        valid_result = _call(
            func, [_copy(a) for a in args], {k: _copy(v) for k, v in kwargs.items()}
        )
    except Exception as exc:
        pytest.fail(f"the valid call of {label} failed: {type(exc).__name__}: {exc}")
    valid_floats = list(_floats(valid_result))
    valid_nonneg = all(v >= 0 for v in valid_floats)
    positional = [n for n, p in sig.parameters.items() if n not in kwargs][: len(args)]
    problems: list[str] = []
    count = 0
    asserts = label.startswith("assert_")
    for name, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if (label, name) in KNOWN:
            continue
        kind = kind_of(name, param, label)
        valid_value = kwargs.get(name, args[positional.index(name)] if name in positional else None)
        if kind == "batch":
            bads = _bad_batch(valid_value if valid_value is not None else X_BATCH)
        elif kind == "matrix":
            bads = _bad_matrix(valid_value if valid_value is not None else MATRIX)
        elif kind == "vector":
            bads = _bad_vector(valid_value if valid_value is not None else SPECTRUM)
        else:
            bads = list(BAD_BY_KIND[kind])
        if not optional(param) and kind not in ("any", "dtype"):
            bads.append(("None", None, MUST))
        for text, bad, must in bads:
            if (label, f"{name}={text}") in LEGAL:
                continue
            count += 1
            call_args = [_copy(a) for a in args]
            call_kwargs = {k: _copy(v) for k, v in kwargs.items()}
            if bad is MISSING:
                bad = ctx.fresh() / "no-such-dir" / "file.safetensors"
            if name in positional:
                call_args[positional.index(name)] = bad
            else:
                call_kwargs[name] = bad
            where = f"{label}({name}={text})"
            try:
                result = _call(func, call_args, call_kwargs)
            except LowRankError as exc:
                if not _names_param(str(exc), name, label):
                    problems.append(f"{where}: message does not name {name!r}: {exc}")
                continue
            except AssertionError as exc:
                # An assertion helper fails a legal value that does not pass its check, and
                # a malformed data array with an AssertionError that names it.
                if asserts and (
                    not must or (kind in ARRAY_KINDS and _names_param(str(exc), name, label))
                ):
                    continue
                problems.append(f"{where}: unclear error AssertionError: {exc}")
                continue
            except Exception as exc:
                problems.append(f"{where}: unclear error {type(exc).__name__}: {exc}")
                continue
            if must:
                problems.append(f"{where}: accepted, returned {_short(result)}")
                continue
            floats = list(_floats(result))
            if any(math.isnan(v) for v in floats):
                problems.append(f"{where}: silently returned NaN: {_short(result)}")
            elif any(math.isinf(v) for v in floats) and not any(
                math.isinf(v) for v in valid_floats
            ):
                problems.append(f"{where}: silently returned infinity: {_short(result)}")
            elif (
                valid_nonneg
                and valid_floats
                and isinstance(result, (float, np.floating))
                and any(v < 0 for v in floats)
            ):
                problems.append(f"{where}: silently returned a negative {_short(result)}")
    return count, problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


# Modules whose owners (other work in progress) have yet to take up the sweep's findings: their
# failures are reported as expected failures, with the list, rather than hidden.
OWNED_ELSEWHERE: dict[str, str] = {}


def _owner_note(label: str) -> str | None:
    if label in METHODS:
        return None
    module = getattr(public_callables().get(label), "__module__", "")
    for prefix, note in OWNED_ELSEWHERE.items():
        if module == prefix or module.startswith(prefix + "."):
            return note
    return None


@pytest.mark.parametrize("label", _cases())
def test_bad_arguments(label: str, ctx: Context) -> None:
    count, problems = sweep(label, ctx)
    note = _owner_note(label)
    if problems and note:
        pytest.xfail(f"{note}: {len(problems)} of {count} bad calls:\n" + "\n".join(problems))
    assert not problems, f"{len(problems)} of {count} bad calls of {label}:\n" + "\n".join(problems)


def test_the_issue_modules_are_swept() -> None:
    wanted = {"lowrank", "lowrank.curves", "lowrank.metrics", "lowrank.approx", "lowrank.lora"}
    wanted |= {"lowrank.adapter", "lowrank.adapter.nn", "lowrank.io", "lowrank.analysis"}
    wanted |= {"lowrank.plot", "lowrank.lora.conventions"}
    wanted |= {"lowrank.testing", "lowrank.svd"}
    assert wanted <= set(swept_modules())


def test_every_public_callable_is_swept_or_excused() -> None:
    names = set(public_callables())
    missing = sorted(names - set(VALID) - set(NOT_SWEPT))
    assert not missing, f"add a valid call for {', '.join(missing)} to VALID"
    stale = sorted((set(VALID) | set(NOT_SWEPT)) - names)
    assert not stale, f"VALID or NOT_SWEPT names callables that are not public: {stale}"


# --------------------------------------------------------------------------------------
# The examples of issue 11, section 2, one by one
# --------------------------------------------------------------------------------------


class TestIssueExamples:
    def test_storage_noise_level_nan_norm(self):
        from lowrank.errors import InputError
        from lowrank.metrics import storage_noise_level

        with pytest.raises(InputError, match=r"norm_fro must be finite and >= 0; got nan"):
            storage_noise_level(shape=(6, 5), norm_fro=float("nan"), storage_dtype=np.float16)

    def test_storage_noise_level_negative_norm(self):
        from lowrank.errors import InputError
        from lowrank.metrics import storage_noise_level

        with pytest.raises(InputError, match=r"norm_fro must be finite and >= 0; got -1\.0"):
            storage_noise_level(shape=(6, 5), norm_fro=-1.0, storage_dtype=np.float16)

    def test_storage_noise_level_bad_shape(self):
        from lowrank.errors import ShapeError
        from lowrank.metrics import storage_noise_level

        with pytest.raises(
            ShapeError, match=r"shape must be a tuple of 2 integers >= 0; got \(3,\)"
        ):
            storage_noise_level(shape=(3,), norm_fro=1.0, storage_dtype=np.float16)

    def test_storage_noise_level_empty_shape_is_zero(self):
        from lowrank.metrics import storage_noise_level

        assert storage_noise_level(shape=(0, 5), norm_fro=0.0, storage_dtype="bfloat16") == 0.0

    def test_numerical_rank_more_values_than_min_shape(self):
        from lowrank.errors import ShapeError
        from lowrank.metrics import numerical_rank

        with pytest.raises(
            ShapeError, match=r"singular_values must hold at most min\(shape\) = 1 values.*got 3"
        ):
            numerical_rank([3, 2, 1], shape=(1, 1))

    def test_truncated_svd_norm_fro_below_top_singular_value(self):
        from scipy.sparse.linalg import aslinearoperator

        from lowrank import truncated_svd
        from lowrank.errors import InputError

        A = np.diag([11.1, 2.0, 1.0, 0.5])
        for operand in (aslinearoperator(A), A):
            with pytest.raises(
                InputError, match=r"norm_fro must be >= the norm of the singular values.*11\.1"
            ):
                truncated_svd(operand, 3, norm_fro=1.0, rng=0)

    def test_truncated_svd_norm_fro_below_the_norm_of_the_values_found(self):
        """Half the true norm is above sigma_1 here, but below ||S|| of the top 3: refused
        (it gave residual_fro = 0 and an infinite excess estimate)."""
        from scipy.sparse.linalg import aslinearoperator

        from lowrank import truncated_svd
        from lowrank.errors import InputError

        A = np.diag([4.0, 4.0, 4.0, 4.0])
        with pytest.raises(InputError, match=r"norm_fro must be >= the norm of the singular"):
            truncated_svd(aslinearoperator(A), 3, norm_fro=4.5, rng=0)
        assert truncated_svd(aslinearoperator(A), 3, norm_fro=8.0, rng=0).residual_fro == (
            pytest.approx(4.0)
        )

    def test_truncated_svd_norm_fro_at_top_singular_value_within_rounding(self):
        from scipy.sparse.linalg import aslinearoperator

        from lowrank import truncated_svd

        A = np.diag([11.1, 0.0, 0.0])
        # ||A||_F = S[0] here: a value one ulp below is rounding, not an error.
        res = truncated_svd(aslinearoperator(A), 1, norm_fro=np.nextafter(11.1, 0.0), rng=0)
        assert res.S[0] == pytest.approx(11.1)

    @pytest.mark.parametrize("bad", ["x", float("nan"), float("inf"), -1.0, True])
    def test_truncated_svd_norm_fro_type_dense(self, bad):
        from lowrank import truncated_svd
        from lowrank.errors import InputError

        with pytest.raises(InputError, match=r"norm_fro must be"):
            truncated_svd(np.eye(3), 1, norm_fro=bad)

    def test_bfloat16_by_name_without_importing_ml_dtypes(self):
        import subprocess
        import sys

        code = (
            "import sys; from lowrank.metrics import numerical_rank; "
            "assert 'ml_dtypes' not in sys.modules; "
            "print(numerical_rank([1.0, 1e-3, 1e-17], shape=(3, 3), storage_dtype='bfloat16'))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "1"

    def test_bfloat16_without_ml_dtypes_installed(self, monkeypatch):
        import sys

        from lowrank.errors import DTypeError
        from lowrank.metrics import numerical_rank

        monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes raises
        with pytest.raises(DTypeError, match=r"storage_dtype='bfloat16' needs the ml_dtypes"):
            numerical_rank([1.0], shape=(1, 1), storage_dtype="bfloat16")

    def test_bogus_storage_dtype(self):
        from lowrank.errors import DTypeError
        from lowrank.metrics import numerical_rank

        with pytest.raises(DTypeError, match=r"storage_dtype must be a NumPy dtype.*'bogus'"):
            numerical_rank([1.0], shape=(1, 1), storage_dtype="bogus")
        with pytest.raises(DTypeError, match=r"storage_dtype must be a numeric dtype"):
            numerical_rank([1.0], shape=(1, 1), storage_dtype=object)

    def test_train_and_network_arguments(self):
        from lowrank.adapter.nn import SGD, Network, train
        from lowrank.errors import InputError

        net, x, y = _network(), X_BATCH, np.zeros((3, 6))
        with pytest.raises(
            InputError, match=r"network must be a lowrank.adapter.nn Network; got None"
        ):
            train(None, x, y, loss="mse", optimizer=SGD(0.1), epochs=1)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"optimizer must be a lowrank.adapter.nn Optimizer"):
            train(net, x, y, loss="mse", optimizer=None, epochs=1)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"schedule must be callable; got 'abc'"):
            train(net, x, y, loss="mse", optimizer=SGD(0.1), epochs=1, schedule="abc")  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"shuffle must be True or False; got 'no'"):
            train(net, x, y, loss="mse", optimizer=SGD(0.1), epochs=1, shuffle="no")  # type: ignore[arg-type]
        with pytest.raises(
            InputError, match=r"layers must be a sequence of lowrank.adapter.nn Layer"
        ):
            Network(None)  # type: ignore[arg-type]

    def test_convert_pissa_adapter_malformed_mapping(self):
        from lowrank.errors import InputError
        from lowrank.lora import LoRAConfig, convert_pissa_adapter

        cfg = LoRAConfig(r=2, lora_alpha=2.0)
        A0, B0 = np.ones((2, 3)), np.ones((4, 2))
        with pytest.raises(InputError, match=r"trained\['fc'\] must be a pair \(lora_A, lora_B\)"):
            convert_pissa_adapter({"fc": (A0, B0, A0)}, {"fc": (A0, B0)}, cfg)
        with pytest.raises(InputError, match=r"initial must be a mapping of module names"):
            convert_pissa_adapter({"fc": (A0, B0)}, None, cfg)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"trained must have module names \(str\) as keys"):
            convert_pissa_adapter({1: (A0, B0)}, {"fc": (A0, B0)}, cfg)  # type: ignore[dict-item]

    def test_pattern_key_non_string_patterns(self):
        from lowrank.errors import InputError
        from lowrank.lora import pattern_key

        with pytest.raises(InputError, match=r"patterns must hold only strings; got 1"):
            pattern_key([1, 2], "model.q_proj")  # type: ignore[list-item]
        with pytest.raises(InputError, match=r"patterns must be a sequence of strings"):
            pattern_key("q_proj", "model.q_proj")
        with pytest.raises(InputError, match=r"name must be a string; got 3"):
            pattern_key(["q_proj"], 3)  # type: ignore[arg-type]


if os.environ.get("LOWRANK_SWEEP_SUMMARY"):  # pragma: no cover - counts for a report
    _CATEGORIES = (
        "accepted",
        "unclear error",
        "message does not name",
        "silently returned NaN",
        "silently returned infinity",
        "silently returned a negative",
        "valid call",
    )

    def test_summary(ctx: Context) -> None:
        """Counts of callables, bad calls and problems by category and module (``-s``)."""
        callables = bad_calls = 0
        categories: dict[str, int] = {}
        modules: dict[str, int] = {}
        for label in _cases():
            if label in NOT_SWEPT:
                continue
            try:
                count, problems = sweep(label, ctx)
            except BaseException as exc:  # a failing valid call: counted as one problem
                count, problems = 0, [f"{label}: valid call: {exc}"]
            callables += 1
            bad_calls += count
            func = METHODS[label][0] if label in METHODS else public_callables()[label]
            module = label.split(".")[0] if label in METHODS else func.__module__
            for problem in problems:
                text = problem.split("): ", 1)[-1]
                kind = next((k for k in _CATEGORIES if text.startswith(k)), text.split(":")[0])
                categories[kind] = categories.get(kind, 0) + 1
                modules[module] = modules.get(module, 0) + 1
        print(
            f"\nSWEEP: {callables} callables, {bad_calls} bad calls, "
            f"{sum(modules.values())} problems"
        )
        for kind, n in sorted(categories.items(), key=lambda kv: -kv[1]):
            print(f"  {n:5d}  {kind}")
        for module, n in sorted(modules.items(), key=lambda kv: -kv[1]):
            print(f"  {n:5d}  {module}")


# --------------------------------------------------------------------------------------
# The shared validators, one raise each
# --------------------------------------------------------------------------------------


class TestSharedValidators:
    def test_check_bool(self):
        from lowrank._validation import check_bool
        from lowrank.errors import InputError

        assert check_bool(np.bool_(True), name="flag") is True
        for bad in ("yes", 1, None):
            with pytest.raises(InputError, match=r"flag must be True or False; got"):
                check_bool(bad, name="flag")

    def test_check_real(self):
        from lowrank._validation import check_real
        from lowrank.errors import InputError

        assert check_real(-2, name="c") == -2.0
        with pytest.raises(InputError, match=r"c must be a real number; got 'x'"):
            check_real("x", name="c")
        with pytest.raises(InputError, match=r"c must be finite; got nan"):
            check_real(float("nan"), name="c")

    def test_check_str_and_sequence(self):
        from lowrank._validation import check_str, check_str_sequence
        from lowrank.errors import InputError

        with pytest.raises(InputError, match=r"s must be a string; got 3 of type int"):
            check_str(3, name="s")
        with pytest.raises(InputError, match=r"s must be a non-empty string; got ''"):
            check_str("", name="s", allow_empty=False)
        assert check_str_sequence({"a": 1, "b": 2}, name="keys") == ("a", "b")
        with pytest.raises(InputError, match=r"keys must be a sequence of strings; got 'ab'"):
            check_str_sequence("ab", name="keys")
        with pytest.raises(InputError, match=r"keys must hold only strings; got 1"):
            check_str_sequence(["a", 1], name="keys")

    def test_check_mapping_callable_instance(self):
        from lowrank._validation import check_callable, check_instance, check_mapping
        from lowrank.errors import InputError

        with pytest.raises(InputError, match=r"m must be a mapping; got \[1\] of type list"):
            check_mapping([1], name="m")
        with pytest.raises(InputError, match=r"f must be callable; got 'x'"):
            check_callable("x", name="f")
        with pytest.raises(InputError, match=r"n must be an int thing; got 'x' of type str"):
            check_instance("x", int, name="n", what="an int thing")

    def test_check_path(self, tmp_path):
        from lowrank._validation import check_path
        from lowrank.errors import InputError

        assert check_path(tmp_path, name="p") == tmp_path
        for bad in (3, None, "", b"x"):
            with pytest.raises(InputError, match=r"p must be a non-empty path"):
                check_path(bad, name="p")

    def test_check_shape(self):
        from lowrank._validation import check_matrix_shape, check_shape
        from lowrank.errors import ShapeError

        assert check_matrix_shape([np.int64(2), 3]) == (2, 3)
        assert check_shape((1, 2, 3), ndim=3, allow_zero=False) == (1, 2, 3)
        for bad in ((3,), (-1, 2), (2.0, 3), (True, 3), "ab", None):
            with pytest.raises(ShapeError, match=r"shape must be a tuple of 2 integers >= 0"):
                check_matrix_shape(bad)
        with pytest.raises(ShapeError, match=r"dims must be a tuple of 3 integers >= 1"):
            check_shape((1, 0, 2), name="dims", ndim=3, allow_zero=False)

    def test_as_dtype_and_storage_dtype(self):
        import ml_dtypes

        from lowrank._validation import as_dtype, as_storage_dtype
        from lowrank.errors import DTypeError

        assert as_dtype("bfloat16") == np.dtype(ml_dtypes.bfloat16)
        assert as_storage_dtype(ml_dtypes.bfloat16) == np.dtype(ml_dtypes.bfloat16)
        assert as_storage_dtype("float16") == np.float16
        assert as_storage_dtype(np.int8) == np.int8
        with pytest.raises(DTypeError, match=r"dtype must be a NumPy dtype or its name.*'nope'"):
            as_dtype("nope")
        with pytest.raises(DTypeError, match=r"storage_dtype must be a numeric dtype.*got None"):
            as_storage_dtype(None)
        for bad in (object, str, bool):
            with pytest.raises(DTypeError, match=r"storage_dtype must be a numeric dtype"):
                as_storage_dtype(bad)


def _raises_cases() -> list[tuple[str, Callable[[Context], Any], type[Exception], str]]:
    """(id, call, error, match) for each raise added for issue 11.2 not tested above."""
    import lowrank.svd as svd
    from lowrank import adapter, analysis, lora, plot
    from lowrank.errors import DTypeError, InputError, MissingFileError, RankError, ShapeError

    eye = np.eye(2)
    return [
        (
            "fix_signs complex S",
            lambda c: svd.fix_signs(eye, eye[0] + 1j, eye),
            InputError,
            r"S must be real; got dtype complex128",
        ),
        (
            "fix_signs shapes",
            lambda c: svd.fix_signs(eye, np.ones(3), eye),
            ShapeError,
            r"U, S and Vh must have shapes \(m, r\) with m >= 1, \(r,\) and \(r, n\)",
        ),
        (
            "auto_method kind",
            lambda c: svd.auto_method((4, 4), 1, kind="dask"),
            InputError,
            r"kind must be one of 'dense', 'sparse', 'operator'; got 'dask'",
        ),
        (
            "auto_method rank",
            lambda c: svd.auto_method((4, 4), 5),
            RankError,
            r"rank must satisfy 0 <= rank <= min\(shape\) = 4; got 5",
        ),
        (
            "default_block_size criterion",
            lambda c: svd.default_block_size((9, 9), 2, criterion="x"),
            InputError,
            r"criterion must be one of 'values', 'excess'; got 'x'",
        ),
        (
            "default_tol dtype",
            lambda c: svd.default_tol(object),
            DTypeError,
            r"dtype must have a numeric dtype",
        ),
        (
            "truncated_svd block_krylov",
            lambda c: lowrank_tsvd(block_krylov="no"),
            InputError,
            r"block_krylov must be True or False; got 'no'",
        ),
        (
            "extract max_rank",
            lambda c: lora.extract(MATRIX, MATRIX_B, rank=1, max_rank=1.5),
            RankError,
            r"max_rank must be an integer >= 1; got 1.5",
        ),
        (
            "anchored_patterns keys",
            lambda c: lora.anchored_patterns({1: 2}, ["q"]),
            InputError,
            r"values' keys must hold only strings; got 1",
        ),
        (
            "dropout_mask shape",
            lambda c: adapter.dropout_mask("3", 0.5),
            InputError,
            r"shape must be an int or a sequence of ints; got '3'",
        ),
        (
            "Layer.requires_grad",
            lambda c: _lora_layer().requires_grad("nope"),
            InputError,
            r"name: parameter name must be one of 'base_layer.weight'",
        ),
        (
            "LoRALinear.merge",
            lambda c: _lora_layer().merge(["nope"]),
            InputError,
            r"adapter_names: adapter name must be one of 'default'; got 'nope'",
        ),
        (
            "Network.load_parameters",
            lambda c: _network().load_parameters("x"),
            InputError,
            r"values must be a mapping; got 'x'",
        ),
        (
            "SGD.step",
            lambda c: adapter.nn.SGD(0.1).step({}, None),
            InputError,
            r"grads must be a mapping; got None",
        ),
        (
            "checkpoint dir",
            lambda c: analysis.analyze(c.weights, checkpoint=c.root),
            InputError,
            r"checkpoint must name a file, not a directory",
        ),
        (
            "checkpoint missing dir",
            lambda c: analysis.analyze(c.weights, checkpoint=c.root / "no" / "r.json"),
            MissingFileError,
            r"checkpoint must be in an existing directory",
        ),
        (
            "analyze on_result",
            lambda c: analysis.analyze(c.weights, on_result=3),
            InputError,
            r"on_result must be callable; got 3",
        ),
        (
            "analyze_matrix name",
            lambda c: analysis.analyze_matrix(MATRIX, name=None),
            InputError,
            r"name must be a string; got None",
        ),
        (
            "layer_grid items",
            lambda c: analysis.layer_grid([1], energy=0.9),
            InputError,
            r"results must hold MatrixResult objects; got an item of type int",
        ),
        (
            "layer_grid results",
            lambda c: analysis.layer_grid(3, energy=0.9),
            InputError,
            r"results must be an iterable of MatrixResult objects; got 3",
        ),
        (
            "describe_executor",
            lambda c: analysis.describe_executor("x"),
            InputError,
            r"executor must be a concurrent.futures.Executor; got str",
        ),
        (
            "to_text max_name",
            lambda c: c.report().to_text(max_name=0),
            InputError,
            r"max_name must be >= 1; got 0",
        ),
        (
            "from_dict data",
            lambda c: analysis.MatrixResult.from_dict([]),
            InputError,
            r"data must be a mapping; got \[\]",
        ),
        (
            "from_json text",
            lambda c: analysis.Report.from_json(None),
            InputError,
            r"text must be a string; got None",
        ),
        (
            "write_json path",
            lambda c: c.report().write_json(3),
            InputError,
            r"path must be a non-empty path \(str or os.PathLike\); got 3",
        ),
        (
            "plot data",
            lambda c: plot.plot_curves(3),
            InputError,
            r"data must be a Report or an iterable of MatrixResult objects; got 3",
        ),
        (
            "plot names",
            lambda c: plot.plot_curves(c.report(), names="ab"),
            InputError,
            r"names must be a sequence of strings; got 'ab'",
        ),
        (
            "plot legend",
            lambda c: plot.plot_spectra(c.report(), legend="no"),
            InputError,
            r"legend must be True or False; got 'no'",
        ),
        (
            "plot ax",
            lambda c: plot.plot_spectra(c.report(), ax="x"),
            InputError,
            r"ax must be a matplotlib Axes; got 'x'",
        ),
        (
            "save_figure fig",
            lambda c: plot.save_figure("x", c.fresh(".png")),
            InputError,
            r"fig must be a matplotlib Figure; got str",
        ),
    ]


def lowrank_tsvd(**kwargs: Any) -> Any:
    from lowrank import truncated_svd

    return truncated_svd(MATRIX, 2, **kwargs)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [pytest.param(call, error, match, id=case) for case, call, error, match in _raises_cases()],
)
def test_new_raises(call: Any, error: type[Exception], match: str, ctx: Context) -> None:
    with pytest.raises(error, match=match):
        call(ctx)
