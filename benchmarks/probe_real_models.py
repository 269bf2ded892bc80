"""Probe cost on the models users have, in forward+backward passes of the same model.

For torchvision, timm and Hugging Face models built with random weights (nothing downloaded), at
small realistic sizes (64-224 px, sequence 32), it times ``ds.probe(model, x)`` with the defaults and
with ``sigma_min=False``, interleaved with the model's own forward+backward in each round, and
prints the median ratio with the range over rounds, the steps found and the Jacobian routes.

Targets (issue "The models users have"): with ``sigma_min=False`` at most 20 forward+backward for
every CNN and 30 for every transformer; no model above 40 with the defaults.

Usage: python benchmarks/probe_real_models.py [--rounds 3] [--only NAME ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import depthscope as ds
from _timing import median_time  # benchmarks/_timing.py

FB_PER_ROUND = 3
CNN_TARGET, TRANSFORMER_TARGET, DEFAULTS_TARGET = 20.0, 30.0, 40.0
SEQ = 32


def _torchvision(name: str, px: int):
    import torchvision

    return lambda: (torchvision.models.get_model(name, weights=None), torch.randn(1, 3, px, px))


def _timm(name: str, px: int, **kw):
    import timm

    return lambda: (timm.create_model(name, pretrained=False, **kw), torch.randn(1, 3, px, px))


def _hf(family: str):
    import transformers as tf

    small = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256)
    heads = dict(num_key_value_heads=2)  # grouped-query attention, as these families default to
    configs = {
        "bert": lambda: tf.BertModel(tf.BertConfig(vocab_size=1000, **small)),
        "gpt2": lambda: tf.GPT2Model(
            tf.GPT2Config(vocab_size=1000, n_embd=128, n_layer=4, n_head=4, bos_token_id=0, eos_token_id=0)
        ),
        "llama": lambda: tf.LlamaModel(tf.LlamaConfig(vocab_size=1000, **small, **heads)),
        "mistral": lambda: tf.MistralModel(tf.MistralConfig(vocab_size=1000, **small, **heads)),
        "qwen2": lambda: tf.Qwen2Model(tf.Qwen2Config(vocab_size=1000, **small, **heads)),
        "t5": lambda: tf.T5EncoderModel(tf.T5Config(vocab_size=1000, d_model=128, d_ff=256, num_layers=4, num_heads=4)),
        "vit": lambda: tf.ViTModel(tf.ViTConfig(image_size=64, patch_size=8, **small)),
    }

    def build():
        model = configs[family]()
        x = torch.randn(1, 3, 64, 64) if family == "vit" else torch.randint(0, 1000, (1, SEQ))
        return model, x

    return build


# name -> (kind, builder)
CASES = {
    "tv resnet18 (112 px)": ("cnn", _torchvision("resnet18", 112)),
    "tv resnet50 (64 px)": ("cnn", _torchvision("resnet50", 64)),
    "tv mobilenet_v3_small (112 px)": ("cnn", _torchvision("mobilenet_v3_small", 112)),
    "tv convnext_tiny (64 px)": ("cnn", _torchvision("convnext_tiny", 64)),
    "timm resnet18 (112 px)": ("cnn", _timm("resnet18", 112)),
    "timm convnext_atto (64 px)": ("cnn", _timm("convnext_atto", 64)),
    "timm efficientnet_b0 (64 px)": ("cnn", _timm("efficientnet_b0", 64)),
    "timm vit_tiny (64 px)": ("transformer", _timm("vit_tiny_patch16_224", 64, img_size=64)),
    **{f"hf {f}": ("transformer", _hf(f)) for f in ("bert", "gpt2", "llama", "mistral", "qwen2", "t5", "vit")},
}


def _fwd_bwd(model, x) -> None:
    model.zero_grad(set_to_none=True)
    out = model(x)
    out = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
    out.float().sum().backward()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None, help="case names containing any of these words")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(
        f"depthscope {ds.__version__}, torch {torch.__version__}, {args.threads} thread(s), CPU clock, "
        f"medians of {args.rounds} interleaved rounds (range)"
    )
    print(f"{'model':32s} {'steps':>5s}  {'sigma_min=False':>24s}  {'defaults':>24s}  routes")
    worst = []
    for name, (kind, build) in CASES.items():
        if args.only and not any(w in name for w in args.only):
            continue
        torch.manual_seed(0)
        try:
            model, x = build()
        except Exception as err:  # a library missing or a model it does not have: say so, go on
            print(f"{name:32s} not built: {type(err).__name__}: {err}")
            continue
        model.eval()
        fast, full, report = [], [], None
        try:
            for r in range(args.rounds + 1):  # round 0 warms up
                fb = median_time(lambda: _fwd_bwd(model, x), FB_PER_ROUND)
                t0 = time.process_time()
                report = ds.probe(model, x, sigma_min=False)
                t1 = time.process_time()
                ds.probe(model, x)
                t2 = time.process_time()
                if r:
                    fast.append((t1 - t0) / fb)
                    full.append((t2 - t1) / fb)
        except ds.DepthscopeError as err:
            print(f"{name:32s} probe failed: {type(err).__name__}: {str(err)[:120]}")
            continue
        med = statistics.median
        target = CNN_TARGET if kind == "cnn" else TRANSFORMER_TARGET
        ok = med(fast) <= target and med(full) <= DEFAULTS_TARGET
        worst.append(ok)
        print(
            f"{name:32s} {len(report):5d}  {med(fast):6.1f} ({min(fast):.1f}-{max(fast):.1f}) "
            f"{'ok' if med(fast) <= target else 'OVER':>4s}  {med(full):6.1f} ({min(full):.1f}-{max(full):.1f}) "
            f"{'ok' if med(full) <= DEFAULTS_TARGET else 'OVER':>4s}  {report.settings['jacobian_routes']}"
        )
    print(f"{sum(worst)} of {len(worst)} models within their targets")


if __name__ == "__main__":
    main()
