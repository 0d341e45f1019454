"""``vai data list | verify | fetch``: the data directory from the command line.

Each handler takes the parsed namespace and returns an exit code (the ``args.func(args)``
convention of vai's CLI); problems the user can fix are raised as UserError, which the CLI
prints as one line and turns into exit code 2. ``verify`` returns 1 when it finds damage, so
scripts can tell "data is bad" from "command was wrong".
"""

from __future__ import annotations

import argparse
from typing import Any

from vai.data.registry import DATASETS, dataset_names, get_dataset
from vai.data.store import (
    ENV_VAR,
    FetchResult,
    Status,
    fetch,
    fetch_command,
    local_file_count,
    missing_files,
    resolve_data_dir,
    verify,
)


def add_data_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``data`` command (with ``list``, ``verify``, ``fetch``) to ``subparsers``.

    ``subparsers`` is what ``ArgumentParser.add_subparsers`` returned. Returns the ``data``
    parser so a caller can extend it.
    """
    # --data-dir defaults to SUPPRESS so that, should the main parser also offer --data-dir,
    # a value given before "data" is not overwritten by this sub-parser's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"data directory (default: ${ENV_VAR}, else ~/.cache/vai/data)",
    )
    names = ", ".join(dataset_names())

    data = subparsers.add_parser(
        "data",
        help="list, verify and fetch benchmark data sets",
        description="Manage the data directory that holds the benchmark data sets.",
    )
    actions = data.add_subparsers(dest="data_command", required=True, metavar="{list,verify,fetch}")

    listing = actions.add_parser("list", parents=[common], help="show the data sets and whether they are present")
    listing.set_defaults(func=run_list)

    checking = actions.add_parser(
        "verify",
        parents=[common],
        help="check files against their sha256 (exit 1 if any is bad; absent local-only pools skipped unless named)",
    )
    checking.add_argument("names", nargs="*", metavar="NAME", help=f"data sets (default: all): {names}")
    checking.set_defaults(func=run_verify)

    fetching = actions.add_parser("fetch", parents=[common], help="download data sets, checking their sha256")
    fetching.add_argument("names", nargs="+", metavar="NAME", help=f"data sets: {names}")
    fetching.add_argument(
        "--mirror",
        metavar="URL",
        help="base URL (http(s)://, file://) or folder holding the files at their data-dir paths, "
        "used instead of the upstream sources",
    )
    fetching.set_defaults(func=run_fetch)
    return data


def run_list(args: argparse.Namespace) -> int:
    """Print one row per data set: name, file count, presence, description."""
    root = resolve_data_dir(getattr(args, "data_dir", None))
    rows = [("NAME", "FILES", "STATUS", "DESCRIPTION")]
    for dataset in DATASETS:
        if dataset.local_only:
            count = local_file_count(root / dataset.folder)
            files, status = str(count), "present" if count else "missing"
        else:
            total = len(dataset.files)
            present = total - len(missing_files(dataset, root))
            files = str(total)
            status = "present" if present == total else f"partial {present}/{total}"
            status = "missing" if present == 0 else status
        rows.append((dataset.name, files, status, dataset.description))
    print(f"data dir: {root}")
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    print("(presence only; 'vai data verify' checks contents)")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Verify the named data sets (all by default); 1 if any file is missing or corrupted.

    Without names, a local-only pool that is not there (e.g. places365 when the photos pool is used)
    is reported as not provided and is not an error; named, it must be there.
    """
    root = resolve_data_dir(getattr(args, "data_dir", None))
    names = _checked_names(args.names or dataset_names())
    bad = 0
    refetch = []
    for name in names:
        checks = verify(name, root)
        failures = [c for c in checks if c.status is not Status.OK]
        if not args.names and get_dataset(name).local_only and failures:
            print(f"{name}: not provided (local only, optional)")
            continue
        for check in failures:
            print(f"{check.path}: {check.status.value} ({check.detail})")
        bad += len(failures)
        if failures and not get_dataset(name).local_only:
            refetch.append(name)
        summary = "ok" if not failures else f"{len(failures)} of {len(checks)} bad"
        print(f"{name}: {summary}")
    if bad:
        advice = f"; run '{fetch_command(' '.join(refetch), root)}'" if refetch else ""
        print(f"{bad} bad file(s) in {root}{advice}")
        return 1
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch the named data sets, printing a line per file; errors raise UserError."""
    root = resolve_data_dir(getattr(args, "data_dir", None))
    names = _checked_names(args.names)

    def report(result: FetchResult) -> None:
        print(f"{result.action}: {result.path}", flush=True)

    for name in names:
        results = fetch(name, root, mirror=args.mirror, on_file=report)
        print(f"{name}: ok ({len(results)} files in {root / get_dataset(name).folder})")
    return 0


def _checked_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """``names`` without repeats, each validated before any work starts."""
    unique = list(dict.fromkeys(names))
    for name in unique:
        get_dataset(name)
    return unique
