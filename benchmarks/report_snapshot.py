"""Snapshot the probe's numbers on the benchmarks' cases, or compare with a snapshot.

A refactor that should change no behaviour must leave every number of these reports identical:
the cases of benchmarks/probe_vs_exact.py (64-block residual MLPs of widths 256 and 1024, batch 1,
in its three configurations) and of benchmarks/probe_zoo.py (resnet56, batch 1, 16 Lyapunov
exponents, with and without sigma_min), and every registered model at its tiny size. One thread,
fixed seeds.

Usage: python benchmarks/report_snapshot.py save DIR
       python benchmarks/report_snapshot.py compare DIR     (prints every difference; exit 1 if any)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch

import depthscope as ds

SEED = 0
DEPTH = 64
# Field names across report versions: a renamed field is compared under its new name.
RENAMED = {
    "local_fro": "local_rms",
    "local_fro_se": "local_rms_se",
    "cum_log_fro": "cum_log_rms",
    "cum_log_fro_se": "cum_log_rms_se",
}


def _cases():
    for width in (256, 1024):
        torch.manual_seed(SEED)
        model = ds.create_model("resnet_mlp", depth=DEPTH, width=width)
        x = torch.randn(1, width, generator=torch.Generator().manual_seed(SEED))
        for name, kw in {
            "defaults": {},
            "sigma_min=False": dict(sigma_min=False),
            "naive's set": dict(sigma_min=False, lyapunov=0),
        }.items():
            yield f"probe_vs_exact w{width} {name}", model, x, kw
    torch.manual_seed(SEED)
    model = ds.create_model("resnet56").eval()
    x = model.example_input(1, torch.Generator().manual_seed(SEED))
    for with_min in (False, True):
        yield f"probe_zoo resnet56 sigma_min={with_min}", model, x, dict(lyapunov=16, probes=16, sigma_min=with_min)
    for name in ds.list_models():
        spec = ds.model_spec(name)
        torch.manual_seed(SEED)
        model = spec.factory(**spec.tiny)
        yield f"tiny {name}", model, model.example_input(2, torch.Generator().manual_seed(SEED)), {}


def _numbers(report) -> dict:
    d = report.to_dict()
    blocks = [{RENAMED.get(k, k): v for k, v in b.items()} for b in d["blocks"]]
    top = {k: v for k, v in d.items() if k not in ("blocks", "settings", "versions", "format")}
    return {"top": top, "blocks": blocks}


def _diff(a, b, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'before' if k in a else 'after'}")
            else:
                _diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (u, v) in enumerate(zip(a, b)):
            _diff(u, v, f"{path}[{i}]", out)
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        out.append(f"{path}: {a!r} -> {b!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=("save", "compare"))
    ap.add_argument("dir", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    snapshot = {name: _numbers(ds.probe(model, x, seed=SEED, **kw)) for name, model, x, kw in _cases()}
    path = args.dir / "reports.json"
    if args.action == "save":
        args.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(snapshot, indent=1), encoding="utf-8")
        print(f"saved {len(snapshot)} reports to {path}")
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    diffs: list[str] = []
    _diff(before, json.loads(json.dumps(snapshot)), "", diffs)
    # A field that only the new version reports is a new quantity, not a changed number: counted apart.
    new_fields = Counter(d.split(": only in after")[0].rsplit(".", 1)[-1] for d in diffs if d.endswith("only in after"))
    changed = [d for d in diffs if not d.endswith("only in after")]
    print(f"{len(snapshot)} reports compared with {path}: {len(changed)} differences")
    for name, count in sorted(new_fields.items()):
        print(f"  new field {name!r} (in {count} places)")
    for line in changed[:200]:
        print("  " + line)
    sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
