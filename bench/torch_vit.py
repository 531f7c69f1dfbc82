#!/usr/bin/python3
"""The PyTorch reference for lvd-bench-vit: the DINOv2 reference ViT forward in images/s.

Builds vit_small with patch 14 from a facebookresearch/dinov2 checkout (--dinov2 DIR) in the
configuration of lvd-bench-vit and of the released dinov2_vits14 (img_size 518, so a 37 x 37
positional grid resized to the input, LayerScale, MLP FFN, no registers) with random weights,
and times the forward of a batch at 224 x 224 in eval mode under no_grad on N threads: warm-up
forwards, then the median (and best) of several timed ones, and the median per CPU second of the
process (meaningful on a loaded machine, where wall time is not). Not used by the build or the tests;
run it by hand next to lvd-bench-vit (README, Benchmarks), e.g.

    /usr/bin/python3 bench/torch_vit.py --dinov2 /path/to/dinov2 --threads 2 --batch 8

xFormers is disabled (a CPU run has no use for it). OPENBLAS_NUM_THREADS and OMP_NUM_THREADS are
set to N as well, so that every product runs on N threads. Recent DINOv2 calls
torch.nn.functional.scaled_dot_product_attention, which PyTorch < 2.0 (Debian 12 ships 1.13)
lacks; there it is supplied as the same math (softmax(q k^T / sqrt(hd)) v), which is the
attention DINOv2 itself wrote out before it switched to that call.
"""
import argparse
import math
import os
import statistics
import sys
import time
import warnings


def sdpa_fallback(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
    import torch

    if attn_mask is not None or dropout_p or is_causal:
        raise NotImplementedError("only plain attention is supplied for PyTorch < 2.0")
    a = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    return torch.softmax(a, dim=-1) @ v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dinov2", required=True, help="a facebookresearch/dinov2 checkout")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224, help="image side in pixels")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=7, help="timed forwards")
    args = ap.parse_args()
    if args.threads < 1 or args.batch < 1 or args.iters < 1 or args.size % 14:
        sys.exit("torch_vit.py: threads, batch, iters must be positive, size a multiple of 14")
    if not os.path.isfile(os.path.join(args.dinov2, "dinov2", "models", "vision_transformer.py")):
        sys.exit(f"torch_vit.py: {args.dinov2} is not a dinov2 checkout")
    os.environ["XFORMERS_DISABLED"] = "1"
    # torch.set_num_threads does not reach Debian's OpenBLAS (its own thread pool, which would
    # run the Linear products on every core): its count is fixed before it loads.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, args.dinov2)
    warnings.filterwarnings("ignore", message="xFormers is")
    import torch

    if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        torch.nn.functional.scaled_dot_product_attention = sdpa_fallback
    from dinov2.models import vision_transformer as vits

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = vits.vit_small(
        img_size=518,
        patch_size=14,
        init_values=1.0,
        ffn_layer="mlp",
        block_chunks=0,
        num_register_tokens=0,
        interpolate_antialias=False,
        interpolate_offset=0.1,
    )
    model.init_weights()
    model.eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    times, cpu = [], []
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            t0, c0 = time.perf_counter(), time.process_time()
            out = model(x)
            t, c = time.perf_counter() - t0, time.process_time() - c0
            if i >= args.warmup:
                times.append(t)
                cpu.append(c)
    assert out.shape == (args.batch, 384)
    med = statistics.median(times)
    print(
        f"torch {torch.__version__} dinov2 vit_small/14 batch {args.batch} threads "
        f"{torch.get_num_threads()} {args.size}x{args.size}: median {args.batch / med:.2f} "
        f"images/s, best {args.batch / min(times):.2f} images/s, median "
        f"{args.batch / statistics.median(cpu):.2f} images per CPU second ({args.iters} forwards)"
    )


if __name__ == "__main__":
    main()
