"""The claim ledger: every claim of the theory as an experiment that can fail.

    import depthscope as ds
    result = ds.ledger.run("R7", preset="quick")     # a typed ClaimResult
    ds.ledger.run_many(preset="quick", out="ledger")  # results.json + atlas.html

Experiments live in `depthscope.ledger.claims`, one module per claim, listed once in
`claims.EXPERIMENTS`, which the registry (`_registry`) registers. Each states up front the outcome
that would refute its claim.

Inside, the modules form layers (lowest first): `_experiment` (what an experiment is), `_data` and
`_train`; `claims`; `_registry` and `_result` (a claim's result, the results file); `_atlas` (the
HTML page); `_runner` (runs claims, writes results and atlas together).
"""

from depthscope.ledger._atlas import render_atlas, write_atlas
from depthscope.ledger._data import Dataset, digits, load_dataset, mnist
from depthscope.ledger._experiment import (
    CONFIRMED,
    PRESETS,
    QUALIFIED,
    REFUTED,
    SOURCES,
    VERDICTS,
    Experiment,
    Judgement,
    confirmed,
    qualified,
    refuted,
)
from depthscope.ledger._registry import UnknownClaimError, get_experiment, list_experiments, register_experiment
from depthscope.ledger._result import ClaimResult, load_results, save_results
from depthscope.ledger._runner import RESULTS_FILE, resolve_ids, run, run_experiment, run_many
from depthscope.ledger._train import TrainingRun, train_classifier

__all__ = [
    "CONFIRMED",
    "PRESETS",
    "QUALIFIED",
    "REFUTED",
    "RESULTS_FILE",
    "SOURCES",
    "VERDICTS",
    "ClaimResult",
    "Dataset",
    "Experiment",
    "Judgement",
    "TrainingRun",
    "UnknownClaimError",
    "confirmed",
    "digits",
    "get_experiment",
    "list_experiments",
    "load_dataset",
    "load_results",
    "mnist",
    "qualified",
    "refuted",
    "register_experiment",
    "render_atlas",
    "resolve_ids",
    "run",
    "run_experiment",
    "run_many",
    "save_results",
    "train_classifier",
    "write_atlas",
]
