"""The `pairforge` command: run a stage (what dvc.yaml calls), inspect the rejections ledger, or write a report."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import polars as pl

STAGES = ["ingest", "embed", "index", "mine", "generate", "filter", "export"]  # dvc.yaml's stages, in order


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pairforge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one stage in the current project (reads ./params.yaml)")
    run.add_argument("stage", choices=STAGES)
    audit = commands.add_parser("rejections", help="count rejections by stage and reason, with examples")
    audit.add_argument("--data", type=Path, default=Path("data"))
    audit.add_argument("--samples", type=int, default=3)
    page = commands.add_parser("report", help="write a static HTML report: score distributions, rejections")
    page.add_argument("--data", type=Path, default=Path("data"))
    page.add_argument("--out", type=Path, default=Path("report.html"))
    review = commands.add_parser("review", help="read kept edits: N per op with their scores, or a blind sheet")
    review.add_argument("--data", type=Path, default=Path("data"))
    review.add_argument("--per-op", type=int, default=8)
    review.add_argument("--seed", type=int, default=0)
    review.add_argument("--ops", help="comma-separated op codes to read (default: every op with kept edits)")
    review.add_argument("--sheet", type=Path, help="write a blind review sheet (CSV: no op, no scores) here")
    args = parser.parse_args(argv)
    if args.command == "review":
        from pipeline import artifacts
        from pipeline.contrast import review as reading

        edits = pl.from_arrow(artifacts.read(args.data / "filtered/edits"))
        picked = reading.sample(edits, args.per_op, args.seed, args.ops.split(",") if args.ops else None)
        if args.sheet:
            reading.write_sheet(picked, args.sheet, args.seed)
            print(f"wrote {picked.height} edits to {args.sheet}: fill `valid` (y / n) and `why`")
        else:
            print("\n".join(reading.lines(picked)))
        return
    if args.command == "run":
        importlib.import_module(f"stages.{args.stage}").main()
        return
    if args.command == "report":
        from pipeline import artifacts, ledger, report

        found = report.scores(args.data)
        name = artifacts.manifest(args.data / "export")["params"]["export"]["name"]
        html = report.page(
            name, report.metrics(args.data, found), report.histogram(found), ledger.summary(args.data, 0)[0]
        )
        artifacts.write_text_atomically(args.out, html)
        print(f"wrote {args.out}")
        return
    from pipeline import ledger

    counts, examples = ledger.summary(args.data, args.samples)
    with pl.Config(tbl_rows=200, fmt_str_lengths=80, tbl_width_chars=160):
        print(counts)
        print(examples)


if __name__ == "__main__":
    main()
