"""The `recbench` command. Thin: parse, call, print. Heavy imports (torch, mlflow) happen inside commands.

Exit status: 0 ok; 1 a run or a download failed; 2 bad input (recipe, card, option), with a message that says
what is wrong and how to fix it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import recbench

app = typer.Typer(
    name="recbench",
    help="Benchmark ID-based against modality-based (text, image) sequential recommenders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: list the cards, fetch files, print statistics.", no_args_is_help=True)
app.add_typer(data_app, name="data")
recipes_app = typer.Typer(
    help="The recipes shipped with recbench: `recbench recipes` lists them, `show NAME` prints one, "
    "`copy NAME [DEST]` writes one to edit; `recbench run NAME` runs one.",
    invoke_without_command=True,
)
app.add_typer(recipes_app, name="recipes")

err = Console(stderr=True)


def _out(stderr: bool = False) -> Console:
    """A console that keeps wide tables readable when output is piped (rich assumes 80 columns then)."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=160)


def _fail(message: str, code: int) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"recbench {recbench.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """recbench: one protocol for ID vs text/image item representations."""


@app.command()
def run(
    recipe: Annotated[
        Path,
        typer.Argument(
            help="Recipe YAML, e.g. recipes/morec_vs_idrec.yaml, or the name of a shipped recipe (smoke; "
            "`recbench recipes` lists them). An existing file always wins over a name."
        ),
    ],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key, e.g. --set train.lr=3e-4")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per run on stdout.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and list the runs; train nothing.")
    ] = False,
    data_dir: Annotated[
        list[str] | None,
        typer.Option(
            "--data-dir",
            help="Local folder with the dataset files (no download), for every dataset of the recipe; or "
            "CARD=DIR for one card (repeat it for several datasets).",
        ),
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Run only runs whose name matches (glob).")
    ] = None,
    max_runs: Annotated[int | None, typer.Option("--max-runs", min=1, help="Run at most N runs.")] = None,
    rerun: Annotated[
        bool, typer.Option("--rerun", help="Train again even if a FINISHED run exists.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="Where runs train: serial (one after the other, here) or ray (each run a Ray task with "
            "RECBENCH_THREADS or train.threads CPUs, default 1; needs pip install 'recbench\\[ray]').",
        ),
    ] = "serial",
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Ray cluster to join (auto, HOST:PORT, ray://HOST:PORT); default: a local Ray."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Ray: at most N runs at once.")
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=2,
            help="Train one run data-parallel over N processes on this machine (torch.distributed, gloo); "
            "or start recbench under torchrun.",
        ),
    ] = None,
) -> None:
    """Train and evaluate every run of a recipe; track them in MLflow; print a summary table."""
    from recbench.config import RecipeError, load_recipe
    from recbench.data.schema import DataError

    try:
        from recbench.shipped import find_recipe

        parsed = load_recipe(find_recipe(recipe), set_)
        from recbench.runner import RunOptions, check_against_cards, parse_data_dirs, select_runs

        options = RunOptions(
            data_dirs=parse_data_dirs(data_dir),
            only=only,
            max_runs=max_runs,
            skip_finished=not rerun,
            command=_command_line(recipe, set_, data_dir, only, max_runs, rerun),
            executor=executor,
            address=address,
            workers=workers,
        )
        runs = select_runs(parsed, options)
        check_against_cards(runs)
        from recbench.executors import make_executor

        make_executor(options)  # an unknown executor or a flag it does not take: exit 2 before any work
    except (RecipeError, DataError) as exc:
        _fail(str(exc), 2)
    if not runs:
        _fail(f"no run of {recipe} matches --only {only!r}", 2)
    if dry_run:
        for spec in runs:
            line = {"name": spec.run_name, "recipe_hash": spec.recipe_hash}
            typer.echo(json.dumps(line) if as_json else f"{spec.recipe_hash}  {spec.run_name}")
        return
    from recbench import distributed

    if nproc or distributed.launched():  # one run, data-parallel (recbench.distributed)
        try:
            distributed.check(runs, nproc, executor)
        except RecipeError as exc:
            _fail(str(exc), 2)
        if nproc:
            raise typer.Exit(distributed.launch(nproc, sys.argv[1:]))
        ddp = distributed.start()
        if ddp.rank != 0:  # rank 0 evaluates, tracks, saves and prints; the others only train
            try:
                distributed.follow(runs[0])
            finally:
                distributed.stop()
            return

    from recbench.evaluation.metrics import NonFiniteScoresError
    from recbench.executors import RunsFailed
    from recbench.lifecycle import Terminated, install_sigterm_handler
    from recbench.reporting import make_reporter, summary_table
    from recbench.runner import run_recipe
    from recbench.training import NonFiniteLossError

    reporter = make_reporter(parsed.train.valid_metric, quiet=quiet)  # plain lines when stderr is no TTY
    install_sigterm_handler()  # SIGTERM ends the current run FAILED with the reason, like Ctrl-C
    failed = None
    try:
        results = run_recipe(parsed, reporter, options)
        if distributed.current():
            distributed.current().close()  # nothing was trained (e.g. reused): the other ranks stop
    except RunsFailed as exc:  # a parallel executor: the other runs finished; their table comes first
        results, failed = exc.results, str(exc)
    except Terminated:
        _fail("terminated (SIGTERM); the runs in progress are marked FAILED in MLflow, redone next time", 143)
    except RecipeError as exc:
        _fail(str(exc), 2)
    except DataError as exc:
        _fail(str(exc), 1)
    except (NonFiniteLossError, NonFiniteScoresError) as exc:
        _fail(f"{exc} (the run is marked FAILED in MLflow)", 1)
    except KeyboardInterrupt:
        _fail("interrupted; the current run is marked FAILED in MLflow and will be redone next time", 130)
    tables = [summary_table(results, parsed.train.valid_metric)]
    if parsed.published:
        from recbench.anchors import anchors_table

        tables.append(anchors_table(results, parsed.published))
    if as_json:
        for result in results:
            sys.stdout.write(json.dumps(result.summary_json()) + "\n")
    for table in tables:
        _out(stderr=as_json).print(table)
    if failed:
        _fail(failed, 1)


def _command_line(recipe, set_, data_dir, only, max_runs, rerun) -> str:
    """The `recbench run` command that produced a run, rebuilt from its options (a tag the leaderboard shows)."""
    import shlex

    words = ["recbench", "run", str(recipe)]
    for item in set_ or []:
        words += ["--set", item]
    for item in data_dir or []:
        words += ["--data-dir", str(item)]
    if only:
        words += ["--only", only]
    if max_runs:
        words += ["--max-runs", str(max_runs)]
    if rerun:
        words.append("--rerun")
    return shlex.join(words)


@app.command()
def validate(
    recipes: Annotated[list[Path], typer.Argument(help="Recipe YAML files, or names of shipped recipes.")],
) -> None:
    """Validate recipes (keys, values, combinations, K against the catalogue) without running anything."""
    from recbench.config import RecipeError, expand, load_recipe
    from recbench.data.schema import DataError
    from recbench.shipped import find_recipe

    failed = False
    for path in recipes:
        try:
            found = find_recipe(path)
            recipe = load_recipe(found)
            runs = expand(recipe)
            from recbench.runner import check_against_cards  # imports torch: only once a recipe parsed

            check_against_cards(runs)
            shipped = "" if found == path else f"  (shipped: {found})"
            typer.echo(f"ok  {path}  ({len(runs)} run{'s' * (len(runs) != 1)}){shipped}")
        except (RecipeError, DataError) as exc:
            failed = True
            err.print(f"[bold red]invalid[/] {exc}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2)


_RUN_REF = Annotated[str, typer.Argument(help="Run id, unique id prefix (4+ characters), or run name.")]
_DATA_DIR = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the run's dataset lives now (default: as recorded).")
]


@app.command()
def recommend(
    run: _RUN_REF,
    user: Annotated[str, typer.Option("--user", help="The user's raw id, as in the dataset's files.")],
    k: Annotated[int, typer.Option("--k", min=1, help="How many items.")] = 10,
    keep_history: Annotated[
        bool, typer.Option("--keep-history", help="Also recommend items the user already has.")
    ] = False,
    data_dir: _DATA_DIR = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per item on stdout.")] = False,
) -> None:
    """Top-K items for one user from a FINISHED run's checkpoint, with the dataset's raw ids (the user's
    history excluded unless --keep-history)."""
    import numpy as np
    from rich.table import Table

    from recbench.checkpoints import CheckpointError, load_run, recommendations_frame, user_index
    from recbench.tracking import RunLookupError

    try:
        loaded = load_run(run, str(data_dir) if data_dir else None)
        frame = recommendations_frame(loaded, np.array([user_index(loaded, user)]), k, keep_history)
    except (RunLookupError, CheckpointError) as exc:
        _fail(str(exc), 2)
    if as_json:
        for row in frame.iter_rows(named=True):
            sys.stdout.write(json.dumps(row) + "\n")
        return
    titles = _item_titles(loaded.data)
    table = Table(title=f"top {k} for user {user} ({loaded.spec.run_name}, run {loaded.run_id[:8]})")
    for col in ("rank", "item", "score", "title"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for row in frame.iter_rows(named=True):
        table.add_row(str(row["rank"]), row["item_id"], f"{row['score']:.4f}", titles.get(row["item_id"], ""))
    _out().print(table)


def _item_titles(data) -> dict[str, str]:
    """Raw item id -> title, when the item table has one."""
    if "title" not in data.items.columns:
        return {}
    return {i: t or "" for i, t in zip(data.item_ids, data.items["title"].to_list())}


@app.command()
def export(
    run: _RUN_REF,
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    k: Annotated[int, typer.Option("--k", min=1, help="Items per user.")] = 10,
    keep_history: Annotated[
        bool, typer.Option("--keep-history", help="Also recommend items users already have.")
    ] = False,
    data_dir: _DATA_DIR = None,
) -> None:
    """Top-K items for every user of the run's dataset into a parquet file (user_id, rank, item_id, score),
    with the dataset's raw ids; history excluded unless --keep-history."""
    from recbench.checkpoints import CheckpointError, load_run
    from recbench.checkpoints import export as export_all
    from recbench.tracking import RunLookupError

    try:
        loaded = load_run(run, str(data_dir) if data_dir else None)
        rows, seconds = export_all(loaded, output, k, keep_history)
    except (RunLookupError, CheckpointError) as exc:
        _fail(str(exc), 2)
    typer.echo(
        f"wrote {rows} rows ({loaded.data.num_users} users x top {k}) to {output} in {seconds:.1f} s",
        err=True,
    )


@app.command()
def compare(
    run_a: Annotated[str, typer.Argument(help="Run id, unique id prefix, or run name.")],
    run_b: Annotated[str, typer.Argument(help="Run id, unique id prefix, or run name (the reference).")],
    metric: Annotated[
        str, typer.Option("--metric", help="Metric of the paired tests, e.g. ndcg@10.")
    ] = "ndcg@10",
) -> None:
    """Compare two runs of the same protocol on the same users: metrics, A - B with a 95% bootstrap CI,
    Wilcoxon and paired t-test p-values. Runs of different protocols are refused (exit 2)."""
    from rich.table import Table

    from recbench.compare import IncomparableRuns
    from recbench.compare import compare as compare_runs
    from recbench.leaderboard import candidates_label
    from recbench.tracking import RunLookupError, Store

    try:
        store = Store()
        a, b = store.find_run(run_a), store.find_run(run_b)
        result = compare_runs(a, b, metric)
    except (RunLookupError, IncomparableRuns, ValueError) as exc:
        _fail(str(exc), 2)
    out = _out()
    protocol = a.result.protocol
    sampled = protocol.get("candidates") == "sampled"
    out.print(f"A  {a.run_id}  {a.run_name}  (experiment {a.experiment})", highlight=False)
    out.print(f"B  {b.run_id}  {b.run_name}  (experiment {b.experiment})", highlight=False)
    out.print(
        f"protocol {a.result.protocol_fingerprint}: {a.result.dataset}, {a.result.split}, "
        f"{candidates_label(protocol)}; {result.users} test users paired",
        highlight=False,
    )
    table = Table(title="test metrics" + (" (SAMPLED candidates)" if sampled else ""))
    for col in ("metric", "A", "B", "A - B"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name in sorted(
        set(result.metrics_a) | set(result.metrics_b), key=lambda m: (int(m.split("@")[1]), m)
    ):
        va, vb = result.metrics_a.get(name), result.metrics_b.get(name)
        table.add_row(
            name,
            "-" if va is None else f"{va:.4f}",
            "-" if vb is None else f"{vb:.4f}",
            "-" if va is None or vb is None else f"{va - vb:+.4f}",
        )
    out.print(table)
    d, w, t = result.delta, result.wilcoxon, result.t_test
    out.print(
        f"{metric}: A {result.ci_a.estimate:.4f} [{result.ci_a.low:.4f}, {result.ci_a.high:.4f}], "
        f"B {result.ci_b.estimate:.4f} [{result.ci_b.low:.4f}, {result.ci_b.high:.4f}]\n"
        f"A - B = {d.estimate:+.4f}, {d.level:.0%} CI [{d.low:+.4f}, {d.high:+.4f}] "
        f"(paired bootstrap over users, {d.resamples} resamples, seed {d.seed})\n"
        f"Wilcoxon signed-rank (normal approx.): z = {w.statistic:+.3f}, p = {w.p_value:.3g} "
        f"({w.n} non-zero differences)\n"
        f"paired t-test: t = {t.statistic:+.3f}, p = {t.p_value:.3g} (df = {t.n - 1})",
        highlight=False,
    )


@app.command()
def leaderboard(
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment",
            help="MLflow experiment to read (repeatable). Default: the experiments the shipped recipes "
            "declare (not smoke runs, not other experiments in the store).",
        ),
    ] = None,
    store: Annotated[
        list[str] | None,
        typer.Option(
            "--store",
            help="MLflow store to read (repeatable: runs made on several machines are read as one): a tracking "
            "URI, an mlflow.db file or an mlruns folder. Default: MLFLOW_TRACKING_URI, else ./mlflow.db.",
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", help="Markdown file; plots go beside it.")] = Path(
        "LEADERBOARD.md"
    ),
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Write nothing; exit 1 if the file or its plots differ from what the store produces now "
            "(only the date is taken from the file).",
        ),
    ] = False,
) -> None:
    """Write LEADERBOARD.md (and plots) from the FINISHED runs in MLflow, one table per dataset and protocol."""
    from recbench import leaderboard as lb

    try:
        experiments, runs = lb.select_runs(experiment, stores=store)  # refuses (creating nothing) when empty
    except lb.Refusal as exc:
        _fail(str(exc), 2)
    names = list(dict.fromkeys(experiments.values()))  # an experiment may span several stores
    date = (lb.recorded_date(output, names) if check else None) or lb.today()
    board = lb.build(
        runs,
        names,
        date=date,
        command=lb.command_line(experiment, output, store),
        plots_dir=lb.plots_dir_for(output).name,
    )
    try:  # tables of experiments in other stores stay as the file has them (recbench.board_blocks)
        board, kept, replaced = lb.keep_other_blocks(board, names, output)
    except lb.Refusal as exc:
        _fail(
            str(exc), 1 if check else 2
        )  # for --check, a file this store cannot be written into is out of date
    if check:
        problems = lb.check(board, output)
        if problems:
            for problem in problems:
                err.print(problem, highlight=False, markup=False, soft_wrap=True)
            _fail(f"{output} is out of date: run `{lb.command_line(experiment, output, store)}`", 1)
        typer.echo(f"{output} is up to date ({len(board.tables)} tables, {len(runs)} runs)")
        return
    dropped = sorted({e for b in replaced for e in b.experiments} - set(names))
    if dropped:
        err.print(
            f"note: the tables of experiment(s) {', '.join(dropped)} are dropped: {output} held them in one block "
            f"with {', '.join(sorted(names))}, whose runs this store holds; add --experiment for each to keep them",
            highlight=False,
            markup=False,
        )
    lb.write(board, output)
    used = sum(len(row.runs) for table in board.tables for row in table.rows)
    typer.echo(
        f"wrote {output}: {len(board.tables)} table(s) from {used} run(s), {len(board.left_out)} left out; "
        f"plots in {lb.plots_dir_for(output)}"
        + (
            f"; kept the tables of {', '.join(sorted({e for b in kept for e in b.experiments}))} "
            "(runs in another store) as the file has them"
            if kept
            else ""
        )
    )


# --------------------------------------------------------------------------------------------- data


@data_app.command("list")
def data_list() -> None:
    """Every data card: name, domain, modalities, size, and whether its files are cached. A card file that
    cannot be read is named with its problem after the table (exit 2); the other cards are still listed."""
    from rich.markup import escape

    from recbench.data.cards import all_cards, broken_cards
    from recbench.data.download import recbench_home

    Console().print(cards_table(all_cards().values()))
    Console(stderr=True).print(
        f"size: interactions after the card's preprocessing, then the download. Cached files live under "
        f"{recbench_home() / 'datasets'}. NAME:<x> takes a parameter, e.g. amazon-2023:Books (`recbench data "
        "card NAME` prints a card in full).",
        highlight=False,
    )
    for problem in broken_cards().values():
        err.print(f"[bold red]invalid card[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if broken_cards():
        raise typer.Exit(2)


def cards_table(cards) -> Table:
    """One line per card in 80 columns: no borders, the domain without its parenthesis (the card name says
    the category), the size as the card knows it (expected interactions, download size)."""
    from rich import box

    from recbench.data.download import is_cached

    table = Table(title="recbench datasets", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    table.add_column("name", no_wrap=True)
    for col in ("domain", "modalities", "size", "cached"):
        table.add_column(col)
    for card in sorted(cards, key=lambda c: c.name):
        if card.parameter is not None:  # cached values: the folders named <card>--<value>
            values = [v for v in card.parameter.choices if is_cached(card.specialise(v))]
            cached = ", ".join(values) if values else "no"
        elif all(m.kind == "local" for m in card.mirrors):
            cached = "local files"
        else:
            cached = "yes" if is_cached(card) else "no"
        table.add_row(
            card.display_name, card.domain.split(" (")[0], " ".join(card.modalities), _card_size(card), cached
        )
    return table


def _card_size(card) -> str:
    """`100k, 4.9 MB`: interactions the card expects after preprocessing, then the first figure of its
    download size (the rest of `size:` is prose, shown by `recbench data card`); `-` when it knows neither."""
    parts = []
    n = card.expected.interactions
    if n is not None:
        parts.append(f"{n / 1e6:.1f}M" if n >= 999_500 else f"{n / 1e3:.0f}k" if n >= 1000 else str(n))
    if card.size:
        parts.append(card.size.split(" (")[0].split(";")[0].split(",")[0].strip())
    return ", ".join(parts) or "-"


@data_app.command("card")
def data_card(name: Annotated[str, typer.Argument(help="Card name, e.g. movielens-100k")]) -> None:
    """Print a data card (front matter and prose)."""
    from recbench.data.cards import all_cards, get_card
    from recbench.data.schema import DataError

    try:
        card = all_cards().get(name) or get_card(name)  # a parameterised card prints with or without :VALUE
    except DataError as exc:
        _fail(str(exc), 2)
    typer.echo(Path(card.path).read_text(encoding="utf-8"))


def _warnings_to_stderr(caught: list) -> None:
    for w in caught:
        err.print(f"[bold yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Card name, e.g. movielens-100k or amazon-2023:Books")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Check a local folder instead.")] = None,
) -> None:
    """Download (or locate) a dataset's files, verify their checksums, and load it once."""
    import warnings

    from recbench.config import DatasetSection
    from recbench.data.cards import get_card
    from recbench.data.download import resolve
    from recbench.data.schema import DataError

    try:
        card = get_card(name)
    except DataError as exc:
        _fail(str(exc), 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            resolved = resolve(card, data_dir, notify=lambda line: typer.echo(line, err=True))
            from recbench.data.loader import load_dataset

            data = load_dataset(DatasetSection(name=name, data_dir=str(data_dir) if data_dir else None))
        except DataError as exc:
            _warnings_to_stderr(caught)
            _fail(str(exc), 1)
    _warnings_to_stderr(caught)
    typer.echo(
        f"{card.name}: {data.num_users} users, {data.num_items} items, {data.num_interactions} interactions "
        f"({resolved.mirror.format}, from {resolved.source}) in {resolved.folder}"
    )


@data_app.command("stats")
def data_stats(
    name: Annotated[str, typer.Argument(help="Card name, e.g. movielens-100k or amazon-2023:Books")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Local folder with the files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Users, items, interactions, density, sequence lengths, ties, content coverage, cold items per split."""
    import warnings

    from recbench.data.schema import DataError
    from recbench.data.stats import dataset_statistics, stats_table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            stats = dataset_statistics(name, str(data_dir) if data_dir else None)
        except DataError as exc:
            _warnings_to_stderr(caught)
            _fail(str(exc), 1)
    _warnings_to_stderr(caught)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
    else:
        table = stats_table(stats)
        for column in table.columns:  # a long value (a folder path) wraps whole rather than ending in '...'
            column.overflow = "fold"
        Console().print(table)


# ------------------------------------------------------------------------------------------ recipes


@recipes_app.callback()
def recipes_list(ctx: typer.Context) -> None:
    """List the shipped recipes with what each compares (`recbench run NAME` runs one)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich import box

    from recbench.shipped import recipe_summary, shipped_dir, shipped_recipes

    recipes = shipped_recipes()
    if not recipes:
        _fail(f"no recipe found in {shipped_dir('recipes')}: the installation is incomplete (reinstall)", 1)
    table = Table(title="recbench recipes", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    table.add_column("name", no_wrap=True)
    table.add_column("what it compares")
    for name, path in recipes.items():
        table.add_row(name, recipe_summary(path) or "-")
    Console().print(table)
    Console(stderr=True).print(
        "`recbench run NAME` runs one (a file of that name in the current folder wins); `recbench recipes "
        "show NAME` prints it; `recbench recipes copy NAME [DEST]` writes a copy to edit.",
        highlight=False,
    )


def _shipped_recipe_or_fail(name: str) -> Path:
    from recbench.shipped import RecipeNotFound, shipped_recipe

    try:
        return shipped_recipe(name)
    except RecipeNotFound as exc:
        _fail(str(exc), 2)


@recipes_app.command("show")
def recipes_show(name: Annotated[str, typer.Argument(help="Shipped recipe name, e.g. smoke")]) -> None:
    """Print a shipped recipe (its opening comment says what it compares and how to run it)."""
    typer.echo(_shipped_recipe_or_fail(name).read_text(encoding="utf-8"), nl=False)


@recipes_app.command("copy")
def recipes_copy(
    name: Annotated[str, typer.Argument(help="Shipped recipe name, e.g. morec_vs_idrec")],
    dest: Annotated[
        Path | None,
        typer.Argument(
            help="File or existing folder to write to (default: NAME.yaml in the current folder)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite DEST if it exists.")] = False,
) -> None:
    """Copy a shipped recipe to a file you can edit, then run it with `recbench run FILE`."""
    source = _shipped_recipe_or_fail(name)
    target = dest if dest is not None else Path(source.name)
    if target.is_dir():
        target = target / source.name
    if target.exists() and not force:
        _fail(f"{target} already exists: pass --force to overwrite it, or give another DEST", 2)
    if not target.parent.is_dir():
        _fail(f"cannot write {target}: the folder {target.parent} does not exist (create it first)", 2)
    try:
        target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {target}: {exc.strerror or exc}", 2)
    typer.echo(f"wrote {target} (shipped recipe {source.stem}); edit it, then `recbench run {target}`")


if __name__ == "__main__":  # pragma: no cover
    app()
