"""The training monitor: gradient flow through depth, per block and per step, from the training
step's own forward and backward passes.

The face of the package. Inside, lowest first: `_records` (typed records and the history),
`_taps` (the hooks and their on-device reductions), `_alerts` (bands and once-per-event alerts),
`_blocks` (which modules are tapped), `_sinks` (TensorBoard and the console line) and `_figure`
(the plot), which only read records, and `_monitor` (`Monitor`, which ties them together).
"""

from depthscope.monitor._alerts import EXPLODING_ABOVE, GAIN_BAND, VANISHING_BELOW
from depthscope.monitor._monitor import HISTORY_CSV, HISTORY_JSON, Monitor, MonitorError
from depthscope.monitor._records import BLOCK_QUANTITIES, Alert, History, ProbeRecord, StepRecord
from depthscope.monitor._sinks import summary_line

__all__ = [
    "BLOCK_QUANTITIES",
    "EXPLODING_ABOVE",
    "GAIN_BAND",
    "HISTORY_CSV",
    "HISTORY_JSON",
    "VANISHING_BELOW",
    "Alert",
    "History",
    "Monitor",
    "MonitorError",
    "ProbeRecord",
    "StepRecord",
    "summary_line",
]
