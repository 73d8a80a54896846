"""One run over several processes: data-parallel training with torch.distributed (gloo on CPU).

``recbench run RECIPE --nproc N`` starts N processes through torch's own launcher (``torch.distributed.run``,
what ``torchrun`` is), or the user starts them with ``torchrun --nproc-per-node N -m recbench.cli run
RECIPE``. Every process builds the same model from the same seed; each global batch of ``train.batch_size``
windows is cut into N contiguous shards, each process computes its shard's loss and gradients, and one
all-reduce of a flat buffer sums the gradients, each shard's weighted by its share of the batch's targets,
so every process steps with the gradient of the whole batch's mean loss and the parameters stay identical.
Rank 0 alone validates (the others receive its metrics, so early stopping decides alike everywhere),
tracks in MLflow, saves the checkpoint and prints; the others are silent.

Why not ``DistributedDataParallel``: recbench trains through ``Recommender.train_states``, not
``forward``, and some parameters get no gradient in some steps (held-out item rows, a cloze mask vector);
DDP's reducer needs ``forward`` and ``find_unused_parameters``. One all-reduce per step after ``backward`` is
the same arithmetic without DDP's bucketing overlap, which buys little with gloo on CPU.

Why the result is the single-process run's only up to float rounding: the shards' losses are summed in
another order, and whatever draws random numbers per row (dropout, sampled negatives, cloze masks) draws for
a shard, not for the whole batch. With no dropout and the full-softmax loss the two runs agree to ~1e-6 in
loss (tests/test_distributed.py); the generator state is re-synchronised from rank 0 every epoch, so the
batch order stays the same on every rank whatever the loss draws.

Only one run at a time (select it with ``--only``): the other ranks follow rank 0's single run, and wait
for its word (train, or nothing to train: reused, claimed elsewhere, or a backbone that does not train)
before they load anything.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

GO, STOP = 1, 0
TIMEOUT = datetime.timedelta(hours=6)  # rank 0 may encode a large catalogue before the first collective


def launched() -> bool:
    """True in a process that torchrun (or `--nproc`) started as one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class DistributedRun:
    """The collective steps of data-parallel training; `fit` calls them when :func:`current` is set."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=TIMEOUT)
        if torch.cuda.is_available():  # one GPU per rank: `cuda` (train.device) then means this rank's
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self._told = False  # rank 0: whether the other ranks know yet if there is a run to train

    # ------------------------------------------------------------------ before and after training
    def begin(self) -> None:
        """Rank 0, at the start of training: tell the other ranks to build the run and join in."""
        if self.rank == 0 and not self._told:
            self._tell(GO)

    def wait(self) -> bool:
        """The other ranks, before anything else: True when rank 0 trains the run."""
        word = torch.tensor([STOP])
        dist.broadcast(word, src=0)
        return int(word.item()) == GO

    def close(self) -> None:
        """Rank 0, after its grid: if training never began, tell the other ranks there is nothing to do."""
        if self.rank == 0 and not self._told:
            self._tell(STOP)

    def _tell(self, word: int) -> None:
        self._told = True
        dist.broadcast(torch.tensor([word]), src=0)

    # ------------------------------------------------------------------ per step
    def shard(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's contiguous part of a global batch (empty when the batch has fewer rows than ranks)."""
        return inputs.tensor_split(self.world)[self.rank], targets.tensor_split(self.world)[self.rank]

    def weigh(self, loss: torch.Tensor | None, targets: int) -> tuple[float, bool]:
        """(weight of this shard's mean loss, whether every rank's loss is finite): the weight is the
        shard's share of the batch's loss targets, so the summed gradients are the whole batch's mean."""
        finite = loss is None or bool(torch.isfinite(loss))
        counts = torch.tensor([float(targets), 0.0 if finite else 1.0], dtype=torch.float64)
        dist.all_reduce(counts)
        return targets / max(1.0, counts[0].item()), counts[1].item() == 0

    def sync_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum the gradients of all ranks (one all-reduce); a parameter no rank gave a gradient keeps None,
        as it would in one process (an optimizer skips it)."""
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        has = torch.tensor([float(p.grad is not None) for p in params])
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        )
        dist.all_reduce(has)
        dist.all_reduce(flat)
        offset = 0
        for p, present in zip(params, has.tolist()):
            n = p.numel()
            if present:
                p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    # ------------------------------------------------------------------ per epoch
    def epoch_loss(self, total: float, count: int) -> tuple[float, int]:
        sums = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(sums)
        return sums[0].item(), int(sums[1].item())

    def validate(self, validate) -> dict[str, float]:
        """Rank 0 evaluates; every rank gets its metrics."""
        box = [validate() if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_generator(self, generator: torch.Generator) -> None:
        """Every rank continues with rank 0's random state (next epoch's batch order is then the same)."""
        state = generator.get_state()
        dist.broadcast(state, src=0)
        generator.set_state(state)


_CURRENT: DistributedRun | None = None


def current() -> DistributedRun | None:
    """The distributed run this process takes part in, or None (one process: nothing changes)."""
    return _CURRENT


def start() -> DistributedRun:
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = DistributedRun()
    return _CURRENT


def stop() -> None:
    global _CURRENT
    if dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


def launch_command(nproc: int, argv: list[str]) -> list[str]:
    """The command that runs `recbench run` (`argv`, without --nproc) as `nproc` ranks on this machine."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "recbench.cli",
        *argv,
    ]


def follow(spec, reporter=None) -> None:
    """A rank other than 0: wait for rank 0's word, then train the same run with it (silently; rank 0
    evaluates, tracks and reports)."""
    from recbench import runner
    from recbench.reporting import Reporter

    ddp = current()
    if ddp is None or not ddp.wait():
        return
    quiet = reporter or Reporter()
    memo = runner.DataMemo()
    memo.prepare(spec, quiet)  # the order rank 0 follows: data prepared, then seeded
    runner.run_stages(spec, quiet, None, memo)


def check(runs: list, nproc: int | None, executor: str) -> None:
    """Refuse what a data-parallel run cannot do (a RecipeError: exit status 2)."""
    from recbench.config import RecipeError
    from recbench.regimes import Scratch, regime_for

    how = f"--nproc {nproc}" if nproc else "torchrun"
    if executor != "serial":
        raise RecipeError(f"{how} trains one run over several processes; it does not combine with --executor")
    if len(runs) == 1 and (runs[0].tune is not None or type(regime_for(runs[0])) is not Scratch):
        raise RecipeError(
            f"{how} trains one run from scratch; {runs[0].run_name} has a tune section or a transfer "
            "regime (its other stages would not be shared by the processes): run it without --nproc"
        )
    if len(runs) != 1:
        raise RecipeError(
            f"{how} trains one run over several processes, and the selection holds {len(runs)} runs: pick "
            "one with --only PATTERN (--dry-run lists them)"
        )
    if runs[0].tune is not None:  # the other ranks follow one training, a study is many (they would hang)
        raise RecipeError(
            f"{how} trains one run over several processes, and {runs[0].run_name} is tuned (a study of many "
            "trainings): run it without --nproc, or remove its `tune` section"
        )


def launch(nproc: int, argv: list[str]) -> int:
    """Run `recbench run` (argv with --nproc removed here) as `nproc` ranks; their exit status.

    Threads: each rank gets cpu_count // nproc unless RECBENCH_THREADS says otherwise (N ranks of all cores
    each would oversubscribe the machine many times over)."""
    import subprocess

    rest, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--nproc":
            skip = True
        elif not word.startswith("--nproc="):
            rest.append(word)
    env = dict(os.environ)
    env.setdefault("RECBENCH_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.setdefault("OMP_NUM_THREADS", env["RECBENCH_THREADS"])
    proc = subprocess.Popen(launch_command(nproc, rest), env=env)
    try:
        return proc.wait()
    except BaseException:  # Ctrl-C or SIGTERM here: the ranks must not outlive their launcher
        proc.terminate()
        proc.wait()
        raise
