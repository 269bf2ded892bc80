"""Renderers: they read results, never compute them."""

from depthscope.render._ledger import ledger_progress, render_ledger_list, render_ledger_summary
from depthscope.render._terminal import render_report

__all__ = ["ledger_progress", "render_ledger_list", "render_ledger_summary", "render_report"]
