"""Renderers: they read results, never compute them."""

from depthscope.render._design import render_growth, render_paths, render_plan, render_prune, render_ranking
from depthscope.render._doctor import render_diagnosis, render_verification
from depthscope.render._ledger import ledger_progress, render_ledger_list, render_ledger_summary
from depthscope.render._terminal import render_report

__all__ = [
    "ledger_progress",
    "render_diagnosis",
    "render_growth",
    "render_ledger_list",
    "render_ledger_summary",
    "render_paths",
    "render_plan",
    "render_prune",
    "render_ranking",
    "render_report",
    "render_verification",
]
