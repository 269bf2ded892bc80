"""Accuracy of the probe's estimates on real architectures, against its exact mode.

For a small ViT, GPT-2 and Llama (``transformers``, random weights from configs, eager attention)
and torchvision's ViT and resnet18 (random weights), the default probe is run with several seeds and
compared with ``probe(..., exact=True)`` (full SVDs of every step's Jacobian, exact cumulative
norms from basis pushes). Printed per model and quantity: the median and largest relative error
over steps and seeds (for the log quantities cum_log_rms and log_gain, the absolute error, which is
the relative error of the gain), and for the two estimates that report a standard error, the
largest |error| / standard error.

Usage: python benchmarks/accuracy_real_models.py [--seeds 5] [--models vit vit_tv gpt2 resnet18 llama]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import depthscope as ds

# Small inputs keep the exact oracle (a full SVD per step and basis pushes for the cumulative
# norms) to seconds per model: 32 px images for the ViT (8 px patches: 17 tokens, 1088-wide
# states), 16 px for resnet18 (at 32 px its first stage is 4096 wide, and the oracle's SVDs of
# 4096 x 4096 Jacobians took four minutes), 12 tokens.
IMAGE_SIZE = 32
RESNET_IMAGE_SIZE = 16
TOKENS = 12
VOCAB = 100


def _quiet_transformers():
    from transformers.utils import logging

    logging.set_verbosity_error()


def vit():
    """A ViT of two layers of width 64 on 32 px images in 8 px patches (16 tokens and CLS)."""
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        image_size=IMAGE_SIZE,
        patch_size=8,
        attn_implementation="eager",
    )
    model = ViTModel(cfg, add_pooling_layer=False).eval()
    x = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    return ds.Chain.from_module(model, ["embeddings", "layers.*", "layernorm"], example=x), x


def vit_tv():
    """torchvision's VisionTransformer, two layers of width 64 on 32 px images in 8 px patches. Its
    first layer's Jacobian is spiky (sigma_max / rms about 19: pre-LayerNorm on the small patch
    embeddings), where 16 Hutchinson probes were up to 17% off; its head is zero-initialised."""
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        image_size=IMAGE_SIZE, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10
    ).eval()
    x = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    return ds.Chain.from_module(model, ["encoder.layers.*"], example=x), x


def gpt2():
    """GPT-2 of two layers of width 512 (8 heads), one token: every step is 512 wide (explicit)."""
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(
        n_embd=512,
        n_layer=2,
        n_head=8,
        vocab_size=VOCAB,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    ids = torch.randint(0, VOCAB, (2, 1))
    return ds.Chain.from_hf(GPT2Model(cfg).eval(), ids), ids


def llama():
    """A Llama of two layers of width 64 on 12 tokens (768-wide states: matrix-free)."""
    from transformers import LlamaConfig, LlamaModel

    cfg = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        use_cache=False,
        attn_implementation="eager",
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    model = LlamaModel(cfg).eval()
    ids = torch.randint(0, VOCAB, (1, TOKENS))
    return ds.Chain.from_module(model, ["embed_tokens", "layers.*", "norm"], example=ids), ids


def resnet18():
    """torchvision's resnet18 with 10 classes on one 16 px image (its stages are 1024 to 512 wide)."""
    import torchvision

    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, RESNET_IMAGE_SIZE, RESNET_IMAGE_SIZE)
    return ds.Chain.from_module(model, ["layer*.*"], example=x), x


MODELS = {"vit": vit, "vit_tv": vit_tv, "gpt2": gpt2, "resnet18": resnet18, "llama": llama}
# GPT-2's 512-wide steps are measured on the explicit route too (Lanczos on the explicit matrix),
# whatever route "auto" picks for them.
ROUTES = {"gpt2": ("auto", "explicit")}


def relative_errors(rep: ds.Report, ref: ds.Report) -> dict[str, list[float]]:
    """Relative errors of one report against the exact one, per quantity, over the steps."""
    out: dict[str, list[float]] = {
        "local_rms": [],
        "sigma_max": [],
        "identity_gap": [],
        "cum_log_rms": [],
        "fro/se": [],
        "cum/se": [],
    }
    for b, e in zip(rep.blocks, ref.blocks):
        if e.local_rms > 0:
            err = b.local_rms / e.local_rms - 1
            out["local_rms"].append(abs(err))
            if b.local_rms_se > 0:
                out["fro/se"].append(abs(b.local_rms - e.local_rms) / b.local_rms_se)
        if e.local_sigma_max > 0:
            out["sigma_max"].append(abs(b.local_sigma_max / e.local_sigma_max - 1))
        if e.identity_gap:
            out["identity_gap"].append(abs(b.identity_gap / e.identity_gap - 1))
        if not math.isfinite(e.cum_log_rms):  # a zero step (a zero-initialised head): log 0 on both
            continue
        out["cum_log_rms"].append(abs(b.cum_log_rms - e.cum_log_rms))
        if b.cum_log_rms_se > 0:
            out["cum/se"].append(abs(b.cum_log_rms - e.cum_log_rms) / b.cum_log_rms_se)
    if math.isfinite(ref.log_gain):
        out["log_gain"] = [abs(rep.log_gain - ref.log_gain)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    _quiet_transformers()
    print(f"{'model':9} {'quantity':13} {'median':>9} {'max':>9}   (relative errors; log quantities absolute)")
    for name in args.models:
        torch.manual_seed(0)
        chain, x = MODELS[name]()
        t0 = time.perf_counter()
        ref = ds.probe(chain, x, exact=True, lyapunov=0)
        t_exact = time.perf_counter() - t0
        for method in ROUTES.get(name, ("auto",)):
            errs: dict[str, list[float]] = {}
            frames = set()
            t0 = time.perf_counter()
            for seed in range(args.seeds):
                rep = ds.probe(chain, x, seed=seed, method=method)
                frames.add(rep.settings["cumulative"])
                for q, v in relative_errors(rep, ref).items():
                    errs.setdefault(q, []).extend(v)
            t_probe = (time.perf_counter() - t0) / args.seeds
            routes = sorted({b.method for b in rep.blocks})
            print(
                f"{name:9} ({len(ref.blocks)} steps; method={method}: {', '.join(routes)}; cumulative "
                f"{', '.join(sorted(frames))}; probe {t_probe:.2f} s, exact {t_exact:.2f} s)"
            )
            for q, v in errs.items():
                if v:
                    print(f"{'':9} {q:13} {statistics.median(v):9.2e} {max(v):9.2e}")


if __name__ == "__main__":
    main()
