"""Text encoder top_k (k=2) vs full fine-tuning (or LoRA): training time per epoch, MiniLM + SASRec.

Same recipe for every mode (default recipes/morec_vs_idrec.yaml: its dataset, split, SASRec and train sections;
only the text encoder's mode differs), same batches (same seed), the trainer's own step: `Recommender.train_states`
(full-softmax CE encodes the whole catalogue every step) -> loss -> backward -> Adam. A full epoch of `full` is
minutes on a CPU, so by default each mode runs `--steps` timed steps after one warm-up step and the time per
epoch is EXTRAPOLATED: mean step time x steps per epoch (labelled as such). `--epochs 1` times real epochs.

    OMP_NUM_THREADS=1 RECBENCH_THREADS=1 python benchmarks/topk_vs_full.py --data-dir ../shared/data/ml-100k
    ... --precision bf16      # both modes with bf16 autocast in the trainable layers
    ... --epochs 1            # one measured epoch per mode instead of the extrapolation
    ... --recipe recipes/transfer_amazon_lora.yaml --data-dir ../shared/data/amazon-2014-beauty-sports-toys \
        --modes top_k lora --checkpointing auto   # the lora transfer row's target step on Beauty

`lora` times the target stage of transfer mode `lora` (recbench.regimes) over the top_k tower, as
recipes/transfer_amazon_lora.yaml trains it: the top 2 layers run at every step, only their LoRA updates
(the row's lora_rank, 8 there; through peft), the projection and the backbone's layer norms train.

Encoding the frozen lower layers for top_k (once, then cached on disk) is reported separately, not in the
per-epoch time. The encoder's own share of a step (the catalogue forward + backward + Adam on the encoder's
weights, without SASRec and the loss, which cost the same in both modes) is printed beside it. Timings on a shared machine are noisy: run it on a quiet one and compare only side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recbench.config import TransferRegime, load_recipe  # noqa: E402
from recbench.data.batches import make_windows  # noqa: E402
from recbench.data.cards import get_card  # noqa: E402
from recbench.data.content import ItemContent  # noqa: E402
from recbench.data.loader import load_dataset  # noqa: E402
from recbench.data.splits import make_split  # noqa: E402
from recbench.encoders.lora import insert_lora  # noqa: E402
from recbench.model import Recommender, build_backbone, build_encoder  # noqa: E402
from recbench.regimes import train_only_adapted  # noqa: E402
from recbench.runner import seed_everything  # noqa: E402
from recbench.training import LossSpec, TrainingCatalogue, batch_loss, make_optimizer  # noqa: E402


def time_mode(spec, mode: str, precision: str, steps: int, epochs: int, checkpointing: str = "off") -> dict:
    # Same memory strategy for every mode (default: no activation recomputation), so only the mode differs.
    # `lora` is the target stage of transfer mode lora over the top_k tower (recipes/transfer_amazon_lora.yaml):
    # its top 2 layers run at every step, only their LoRA updates (peft), the projection and the
    # backbone's layer norms train.
    update = {
        "mode": "top_k" if mode == "lora" else mode,
        "top_k": 2,
        "precision": precision,
        "checkpointing": checkpointing,
    }
    encoder_section = spec.encoder.model_copy(update=update)
    generator = seed_everything(spec.seed)
    data = load_dataset(spec.dataset)
    split = make_split(data, spec.split)
    card = get_card(spec.dataset.name)
    content = ItemContent.from_data(
        data, spec.dataset.text_template or card.text_template, card.missing_text, card.missing_image
    )
    backbone = build_backbone(spec.backbone, spec.train.max_len)
    encoder = build_encoder(encoder_section, content, backbone.dim)
    report = encoder.prepare()
    model = Recommender(encoder, backbone, data.num_items, spec.train.max_len)
    if mode == "lora":
        # the recipe row's LoRA settings when it is a lora transfer row, else the regime's defaults
        lora = (
            spec.regime
            if getattr(spec.regime, "mode", None) == "lora"
            else TransferRegime(source=[spec.dataset])
        )
        train_only_adapted(model, insert_lora(model.encoder, lora.lora_rank, lora.lora_alpha))
    windows = make_windows(split.train, spec.train.max_len, spec.train.stride, shift=True)
    loss_spec = LossSpec(spec.train.loss, spec.train.negatives)
    optimizer = make_optimizer(model, spec.train.optimizer, spec.train.lr, spec.train.weight_decay)
    steps_per_epoch = -(-len(windows) // spec.train.batch_size)
    catalogue = TrainingCatalogue(data.num_items, split.cold_items)

    def step(inputs, targets) -> float:
        t0 = time.perf_counter()
        loss, _ = batch_loss(model, inputs, targets, loss_spec, catalogue, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0

    model.train()
    batches = windows.batches(spec.train.batch_size, generator)
    step(*next(batches))  # warm-up (allocator, lazy init)
    if epochs:
        times = []
        for _ in range(epochs):
            t0 = time.perf_counter()
            for inputs, targets in windows.batches(spec.train.batch_size, generator):
                step(inputs, targets)
            times.append(time.perf_counter() - t0)
        per_epoch, how = statistics.mean(times), f"measured over {epochs} epoch(s)"
        per_step = per_epoch / steps_per_epoch
    else:
        times = [step(*next(batches)) for _ in range(steps)]
        per_step = statistics.median(times)
        per_epoch, how = (
            per_step * steps_per_epoch,
            f"EXTRAPOLATED: median of {steps} steps x {steps_per_epoch}",
        )
    # The encoder's share of a step: the catalogue through the encoder, backward, Adam on its weights only.
    enc_optimizer = torch.optim.Adam(model.encoder.param_groups(spec.train.lr))
    catalogue = torch.arange(1, data.num_items + 1)
    weights = torch.randn(data.num_items, backbone.dim, generator=generator)

    def encoder_step() -> float:
        t0 = time.perf_counter()
        loss = (model.encoder(catalogue) * weights).sum()
        enc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        enc_optimizer.step()
        return time.perf_counter() - t0

    encoder_s = statistics.median(encoder_step() for _ in range(max(1, min(steps, 3))))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "mode": mode,
        "per_step": per_step,
        "per_epoch": per_epoch,
        "encoder_s": encoder_s,
        "how": how,
        "prepare_s": report.encode_s,
        "cache_hit": report.cache_hit,
        "trainable": trainable,
        "steps_per_epoch": steps_per_epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "morec_vs_idrec.yaml"))
    parser.add_argument("--data-dir", default=None, help="local folder of the recipe's dataset (no download)")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["top_k", "full", "lora"],
        default=["top_k", "full"],
        help="tower modes to time (lora: transfer mode lora's target step)",
    )
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument(
        "--checkpointing",
        choices=["off", "auto", "on"],
        default="off",
        help="activation recomputation in every mode (off: compare compute only; auto: what a run does)",
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode (after 1 warm-up)")
    parser.add_argument("--epochs", type=int, default=0, help="time this many whole epochs instead")
    args = parser.parse_args()

    threads = os.environ.get("RECBENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    recipe = load_recipe(args.recipe)
    from recbench.config import expand

    # the recipe's top_k text row (its train section: batch size, lr) on the warm split, else its first text row
    text_rows = [s for s in expand(recipe) if s.encoder.kind == "text" and s.split.kind == "leave_one_out"]
    spec = next((s for s in text_rows if s.encoder.mode == "top_k"), text_rows[0])
    if args.data_dir:
        spec = spec.model_copy(
            update={"dataset": spec.dataset.model_copy(update={"data_dir": args.data_dir})}
        )
    print(
        f"{spec.dataset.name}, {spec.backbone.kind}, text encoder {spec.encoder.model}, loss {spec.train.loss}, "
        f"batch {spec.train.batch_size}, precision {args.precision}, checkpointing {args.checkpointing}, "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )
    rows = []
    for mode in args.modes:  # each mode's line as soon as it is measured
        r = time_mode(spec, mode, args.precision, args.steps, args.epochs, args.checkpointing)
        rows.append(r)
        print(
            f"  {r['mode']:>6}: {r['per_epoch']:8.1f} s/epoch ({r['how']}; {r['per_step']:.2f} s/step, of which "
            f"the encoder alone ~{r['encoder_s']:.2f} s), {r['trainable'] / 1e6:.2f}M trainable, prepare "
            f"{r['prepare_s']:.1f} s (cache hit: {r['cache_hit']})",
            flush=True,
        )
    by_mode = {r["mode"]: r for r in rows}
    for slow in ("full", "lora"):
        if slow in by_mode and "top_k" in by_mode:
            a, b = by_mode[slow], by_mode["top_k"]
            print(f"  {slow} / top_k per epoch: {a['per_epoch'] / b['per_epoch']:.2f}x")
            print(
                f"  {slow} / top_k, encoder alone (catalogue forward + backward + Adam): "
                f"{a['encoder_s'] / b['encoder_s']:.2f}x"
            )


if __name__ == "__main__":
    main()
