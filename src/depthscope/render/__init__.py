"""Renderers: they read results, never compute them."""

from depthscope.render._terminal import render_report

__all__ = ["render_report"]
