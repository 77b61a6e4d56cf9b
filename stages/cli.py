"""The `pairforge` command: run a stage (what dvc.yaml calls), inspect the rejections ledger, read rows with their
texts, review edits, or write a report."""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from pathlib import Path

import polars as pl

from pairforge.pipeline.schema import InputError

STAGES = ["ingest", "pairs", "embed", "index", "mine", "generate", "filter", "export"]  # dvc.yaml's stages, in order


def rejections(args: argparse.Namespace) -> None:
    """count rejections by stage and reason, with examples"""
    from pairforge.pipeline import ledger

    counts, examples = ledger.summary(args.data, args.samples)
    with pl.Config(tbl_rows=200, fmt_str_lengths=80, tbl_width_chars=160):
        print(counts)
        print(examples)


def preview(args: argparse.Namespace) -> None:
    """rows of an exported format, or the rejections of one reason with the texts they were about"""
    from pairforge.pipeline import preview as reading

    if args.reason:
        rows = reading.rejected(args.data, args.reason, args.stage, args.n)
    else:
        rows = reading.exported(args.data, args.format, args.split, args.n)
    print(reading.blocks(rows, args.chars, shutil.get_terminal_size().columns))


def report(args: argparse.Namespace) -> None:
    """write a static HTML report: score distributions, rejections"""
    from pairforge.pipeline import artifacts, ledger
    from pairforge.pipeline import report as reports

    found = reports.scores(args.data)
    name = artifacts.manifest(args.data / "export")["params"]["export"]["name"]
    figures, rejected = reports.metrics(args.data, found), ledger.summary(args.data, 0)[0]
    artifacts.write_text_atomically(args.out, reports.page(name, figures, reports.histogram(found), rejected))
    print(f"wrote {args.out}")


def review(args: argparse.Namespace) -> None:
    """read kept edits: N per op with their scores, or a blind sheet"""
    from pairforge.pipeline import artifacts
    from pairforge.pipeline.contrast import review as reading

    edits = pl.from_arrow(artifacts.read(args.data / "filtered/edits"))
    picked = reading.sample(edits, args.per_op, args.seed, args.ops.split(",") if args.ops else None)
    if args.sheet:
        reading.write_sheet(picked, args.sheet, args.seed)
        print(f"wrote {picked.height} edits to {args.sheet}: fill `valid` (y / n) and `why`")
    else:
        print("\n".join(reading.lines(picked)))


def init(args: argparse.Namespace) -> None:
    """write params.yaml's `ingest` section for your own data: a pair file, a BEIR folder or a Hugging Face dataset"""
    from pairforge.pipeline import project

    section = project.guess_ingest(args.source, args.split)
    project.write_ingest(args.params, section)
    picked = ", ".join(f"{key} {value}" for key, value in section.items() if key != "source")
    print(f"wrote the ingest section of {args.params}: {picked}\nnext: dvc repro")


READERS = {command.__name__: command for command in (rejections, preview, report, review)}  # of a built project


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(prog="pairforge", description=__doc__)
    commands = found.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one stage in the current project (reads ./params.yaml)")
    run.add_argument("stage", choices=STAGES)
    setup = commands.add_parser("init", help=init.__doc__)
    setup.add_argument("source", help="a pair file, a BEIR folder, a dataset folder, or hf:<id>")
    setup.add_argument("--split", default="train", help="the qrels split (BEIR) or the dataset split read")
    setup.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file to write")
    sub = {name: commands.add_parser(name, help=command.__doc__) for name, command in READERS.items()}
    for command in sub.values():
        command.add_argument("--data", type=Path, default=Path("data"), help="a built project's data folder")
    sub["rejections"].add_argument("--samples", type=int, default=3)
    what = sub["preview"].add_mutually_exclusive_group(required=True)
    what.add_argument("--format", help="an exported format (triplet, n-tuple, labeled-pair, ...)")
    what.add_argument("--reason", help="a rejection reason (`pairforge rejections` lists them)")
    sub["preview"].add_argument("--split", default="train", help="with --format: train or dev")
    sub["preview"].add_argument("--stage", help="with --reason: that stage's rejections only")
    sub["preview"].add_argument("-n", type=int, default=5, help="rows to show")
    sub["preview"].add_argument("--chars", type=int, default=600, help="cut texts to this many characters (0: whole)")
    sub["report"].add_argument("--out", type=Path, default=Path("report.html"))
    sub["review"].add_argument("--per-op", type=int, default=8)
    sub["review"].add_argument("--seed", type=int, default=0)
    sub["review"].add_argument("--ops", help="comma-separated op codes to read (default: every op with kept edits)")
    sub["review"].add_argument("--sheet", type=Path, help="write a blind review sheet (CSV: no op, no scores) here")
    return found


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "run":
        importlib.import_module(f"pairforge.{args.stage}").main()
        return
    if args.command == "init":
        try:
            init(args)
        except (InputError, ValueError) as err:
            sys.exit(f"pairforge init: {err}")
        return
    # What these commands read is the user's to point at: a missing or unfinished artifact is one line, not a
    # traceback, with exit status 1.
    try:
        if not args.data.is_dir():
            raise FileNotFoundError(f"--data {args.data}: no such folder (a built project's data folder is wanted)")
        READERS[args.command](args)
    except (FileNotFoundError, InputError) as err:
        missing = f"{err.filename}: not found" if getattr(err, "filename", None) else err
        print(f"pairforge {args.command}: {missing}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
