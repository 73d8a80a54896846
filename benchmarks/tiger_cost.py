"""Where a TIGER (generative retrieval) epoch spends its time, and what the exact savings buy.

Builds the recipe's `backbone: tiger` row on its leave-one-out split (the RQ-VAE codes come from the cache
after the first build) and times, on the real windows and validation users:

- training: `--batches` batches of the recipe's batch size, forward (`own_loss`) / backward / optimizer step,
  with the batch in length groups (what `GenerativeRecommender` does) and as one group (the batch cut to its
  longest window: what it did before), plus the encoder's forward alone; the padded token counts of both;
- validation: `--users` validation users through the shared evaluator, incremental beam decoding in length-
  sorted passes (now) against re-running every beam's whole prefix against W copies of the memory in passes of
  204 unsorted users (before), plus the encoder alone;
- each at `--precision` fp32 and/or bf16.

It projects the seconds of one epoch (all training batches + every validation user) from those samples. The
"before" paths are the earlier implementation, kept here only to be timed.

    RECBENCH_THREADS=1 python benchmarks/tiger_cost.py --data-dir ../shared/data/amazon-2014-beauty-sports-toys
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from recbench.config import expand, load_recipe
from recbench.data.batches import make_windows
from recbench.evaluation.protocol import evaluate
from recbench.generative import GenerativeRecommender, beam_search
from recbench.reporting import Reporter
from recbench.runner import DataMemo, build_stage, eval_protocol, seed_everything
from recbench.training import make_optimizer


def legacy_generate(model: GenerativeRecommender, histories: torch.Tensor):
    """The earlier decoder: every level re-runs each beam's prefix against a per-beam copy of the memory."""
    histories = model._trim(histories)[0]
    backbone, b, width = model.backbone, len(histories), model.beam_width
    memory, pad = backbone.encode(model.encoder.level_vectors(histories), histories > 0)

    def step(so_far, parents):
        _, w, depth = so_far.shape
        rows = so_far.reshape(b * w, depth)
        parts = [backbone.bos.expand(b * w, -1)]
        parts += [model._code_vector(level, rows[:, : level + 1]) for level in range(depth)]
        inputs = torch.stack(parts, dim=1) + backbone.step(torch.arange(depth + 1))
        causal = torch.ones(depth + 1, depth + 1, dtype=torch.bool).triu(1)
        out = backbone.decode(
            inputs, memory.repeat_interleave(w, 0), pad.repeat_interleave(w, 0), causal, None
        )
        return F.log_softmax(backbone.heads[depth](out[:, -1]).float(), dim=-1).reshape(b, w, -1)

    return beam_search(step, model.trie, b, width)


def legacy_scorer(model: GenerativeRecommender):
    per_pass = max(1, 4096 // model.beam_width)

    @torch.no_grad()
    def score(histories):
        out = torch.zeros(len(histories), model.num_items + 1)
        for start in range(0, len(histories), per_pass):
            items, logp = legacy_generate(model, histories[start : start + per_pass])
            value = model.beam_width - torch.arange(items.shape[1], dtype=out.dtype)
            value = torch.where(torch.isfinite(logp), value.expand_as(logp), torch.zeros_like(logp))
            rows = out[start : start + len(items)]
            rows.scatter_(1, items, value)
            rows[:, 0] = 0.0
        return out

    return score


def padded_tokens(inputs: torch.Tensor, group: int) -> int:
    """Encoder tokens (history items) a batch costs when cut per length group of `group` rows."""
    total = 0
    for rows in GenerativeRecommender._length_groups(inputs, group):
        part = GenerativeRecommender._trim(inputs[rows])[0]
        total += part.numel()
    return total


def time_training(model, windows, batch_size: int, batches: int, group: int) -> dict:
    model.train()
    model.train_group = group
    optimizer = make_optimizer(model, "adam", 1e-3, 0.0)
    generator = torch.Generator().manual_seed(0)
    fwd, bwd, opt, enc = [], [], [], []
    for i, (inputs, targets) in enumerate(windows.batches(batch_size, generator)):
        if i >= batches:
            break
        t0 = time.perf_counter()
        loss, _ = model.own_loss(inputs, targets, None, None)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        with torch.no_grad(), model._autocast(inputs.device):
            for rows in model._length_groups(inputs, group):
                part = model._trim(inputs[rows])[0]
                model.backbone.encode(model.encoder.level_vectors(part), part > 0)
        t4 = time.perf_counter()
        fwd.append(t1 - t0), bwd.append(t2 - t1), opt.append(t3 - t2), enc.append(t4 - t3)
    med = statistics.median
    return {"fwd": med(fwd), "bwd": med(bwd), "opt": med(opt), "enc_fwd": med(enc)}


def time_validation(model, split, protocol, users: int, legacy: bool) -> tuple[float, float, dict]:
    """(ms per user through the evaluator, ms per user of the encoder alone, metrics) on the first `users`
    users (the metrics of both decoders must agree: the saving is exact)."""
    model.eval()
    mask = np.zeros(len(split.valid), dtype=bool)
    mask[:users] = True
    subset = split.valid.subset(mask)
    t0 = time.perf_counter()
    metrics = evaluate(legacy_scorer(model) if legacy else model.scorer(), subset, protocol).metrics
    total = time.perf_counter() - t0
    from recbench.data.batches import pad_left

    t1 = time.perf_counter()
    with torch.no_grad(), model._autocast(torch.device("cpu")):
        for start in range(0, len(subset), protocol.batch_size):
            inputs = pad_left(subset.histories[start : start + protocol.batch_size], protocol.max_len)
            groups = (
                [torch.arange(len(inputs))] if legacy else model._length_groups(inputs, model.users_per_pass)
            )
            for rows in groups:
                part = model._trim(inputs[rows])[0]
                model.backbone.encode(model.encoder.level_vectors(part), part > 0)
    enc = time.perf_counter() - t1
    return 1000 * total / len(subset), 1000 * enc / len(subset), metrics


def profile(model, windows, batch_size: int, split) -> None:
    """Self time of the top operators (dropout's masks are aten::bernoulli_) in one training batch (forward +
    backward) and in decoding one pass of validation users."""
    from recbench.data.batches import pad_left

    inputs, targets = next(windows.batches(batch_size, torch.Generator().manual_seed(1)))
    model.train()
    with torch.profiler.profile() as prof:
        loss, _ = model.own_loss(inputs, targets, None, None)
        loss.backward()
    print("  one training batch, top operators by self time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    model.zero_grad(set_to_none=True)
    model.eval()
    histories = pad_left(split.valid.histories[: model.users_per_pass], model.max_len)
    with torch.profiler.profile() as prof:
        model.generate(histories)
    print(f"  decoding {len(histories)} validation users, top operators by self time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/semantic_ids_beauty.yaml")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override, e.g. k=v")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--users", type=int, default=512)
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--no-legacy", action="store_true", help="skip timing the earlier paths")
    ap.add_argument("--train-group", type=int, default=GenerativeRecommender.train_group)
    ap.add_argument("--users-per-pass", type=int, default=GenerativeRecommender.users_per_pass)
    ap.add_argument(
        "--one-group", action="store_true", help="also time training a batch as one group (>17 GB)"
    )
    ap.add_argument("--profile", action="store_true", help="top operators of one training batch and one pass")
    args = ap.parse_args()
    GenerativeRecommender.train_group = args.train_group
    GenerativeRecommender.users_per_pass = args.users_per_pass
    threads = int(os.environ.get("RECBENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    overrides = list(args.overrides) + ([f"dataset.data_dir={args.data_dir}"] if args.data_dir else [])
    specs = [
        s
        for s in expand(load_recipe(args.recipe, overrides))
        if s.backbone.kind == "tiger" and s.split.kind == "leave_one_out"
    ]
    spec = specs[0]
    print(f"{spec.run_name}: {threads} thread(s), load {os.getloadavg()[0]:.2f}", flush=True)
    seed_everything(spec.seed)
    prepared = DataMemo().prepare(spec, Reporter())
    split = prepared.split
    t0 = time.perf_counter()
    model, report = build_stage(spec, prepared)
    print(f"  build (content + RQ-VAE codes, cache hit {report.cache_hit}): {time.perf_counter() - t0:.1f} s")
    print(
        f"  codes: {report.extra.get('semantic_id_code_sizes')}, collisions {report.extra.get('semantic_id_collisions')}"
    )
    windows = make_windows(split.train, spec.train.max_len, spec.train.stride, shift=True)
    bs = spec.train.batch_size
    n_batches = -(-len(windows) // bs)
    sample = windows.inputs[torch.randperm(len(windows), generator=torch.Generator().manual_seed(0))]
    one = sum(padded_tokens(sample[i : i + bs], bs) for i in range(0, len(sample), bs))
    grouped = sum(padded_tokens(sample[i : i + bs], model.train_group) for i in range(0, len(sample), bs))
    real = int((windows.inputs > 0).sum())
    print(
        f"  {len(windows)} windows, {n_batches} batches of {bs}; history items per epoch: real {real}, "
        f"padded as one group {one} ({one / real:.1f}x), in groups of {model.train_group} {grouped} "
        f"({grouped / real:.1f}x); {len(split.valid)} validation users",
        flush=True,
    )
    protocol = eval_protocol(spec, prepared.data.num_items)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if args.profile:
        profile(model, windows, bs, split)
    for precision in args.precision:
        model.load_state_dict(state)
        model.precision = precision
        variants = [("groups (now)", model.train_group, False)]
        if (
            not args.no_legacy
        ):  # the earlier decoder on the same weights (its training needed > 17 GB: opt-in)
            variants.append(("one group (before)", bs if args.one_group else None, True))
        for name, group, legacy in variants:
            model.load_state_dict(state)
            if group is not None:
                t = time_training(model, windows, bs, args.batches, group)
                model.load_state_dict(state)  # every validation below ranks with the untrained weights
                step = t["fwd"] + t["bwd"] + t["opt"]
                print(
                    f"  [{precision}] train, {name}: {step:.2f} s/batch (fwd {t['fwd']:.2f}, of which encoder "
                    f"{t['enc_fwd']:.2f}; bwd {t['bwd']:.2f}; step {t['opt']:.2f}) -> {step * n_batches:.0f} "
                    "s/epoch",
                    flush=True,
                )
            if legacy and precision != "fp32":
                continue  # the earlier decoder had no bf16
            ms, enc_ms, metrics = time_validation(model, split, protocol, args.users, legacy)
            kind = "whole prefix, W memory copies (before)" if legacy else "incremental, length-sorted (now)"
            print(
                f"  [{precision}] validation, {kind}: {ms:.1f} ms/user (encoder {enc_ms:.1f}) -> "
                f"{ms * len(split.valid) / 1000:.0f} s per validation of {len(split.valid)} users; untrained "
                f"model's NDCG@10 {metrics['ndcg@10']:.5f}, HR@10 {metrics['hr@10']:.5f}",
                flush=True,
            )
        model.train_group = GenerativeRecommender.train_group


if __name__ == "__main__":
    main()
