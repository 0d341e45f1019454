"""One table from several sweeps of one task: the rows of an ablation ladder, each named by its sweep's settings.

    python benchmarks/ladder_table.py results/sweeps/ladder-cartpole_balance-quick \
        results/sweeps/ladder-cartpole_balance-quick-no_adapt_aug \
        --label "ladder-cartpole_balance-quick-no_adapt_aug=no adapt_aug" \
        --order sac sac+oracle "vai+oracle (no adapt_aug)" vai+oracle vai

Each row is one algorithm of one sweep; a sweep whose ``--set`` goes beyond the others' names its extra settings
in the row (``vai+oracle (adapt_boxes=0 adapt_noise=0)``), or the note given with ``--label SWEEP=TEXT``
(``SWEEP``: the folder's name).
Cells: the return's mean ± std over training seeds and the worst seed, from the sweep's ``table.json``; the
column ``seeds`` counts the finished training seeds of the row. Rows appear in ``--order`` (labels), else as read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows_of(folders: list[Path], labels: dict[str, str]) -> tuple[list[str], dict[str, dict]]:
    """(modes, {row label: {mode: cell}}) of the sweeps in ``folders``."""
    tables = [(folder, json.loads((folder / "table.json").read_text())) for folder in folders]
    shared = set.intersection(*(set(table["settings"]["overrides"]) for _, table in tables))
    modes: list[str] = []
    rows: dict[str, dict] = {}
    for folder, table in tables:
        extra = [item for item in table["settings"]["overrides"] if item not in shared]
        for task, by_algorithm in table["cells"].items():
            for algorithm, by_mode in by_algorithm.items():
                note = labels.get(folder.name) or " ".join(extra)
                name = f"{algorithm} ({note})" if note else algorithm
                if len(table["cells"]) > 1:
                    name = f"{task}: {name}"
                rows[name] = by_mode
                modes += [mode for mode in by_mode if mode not in modes]
    return modes, rows


def markdown(modes: list[str], rows: dict[str, dict], order: list[str] | None) -> str:
    names = [name for name in order if name in rows] if order else list(rows)
    lines = ["| row | seeds | " + " | ".join(f"`{mode}`" for mode in modes) + " |", "|---" * (len(modes) + 2) + "|"]
    for name in names:
        cells = []
        for mode in modes:
            cell = rows[name].get(mode)
            cells.append(f"{cell['mean']:.0f} ± {cell['std']:.0f} ({min(cell['scores']):.0f})" if cell else "-")
        seeds = max((cell["seeds"] for cell in rows[name].values()), default=0)
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep directories (their table.json)")
    parser.add_argument("--order", nargs="+", default=None, help="row labels, in the order to show them")
    parser.add_argument("--label", nargs="+", default=[], metavar="SWEEP=TEXT", help="a sweep's row label")
    args = parser.parse_args()
    labels = dict(item.split("=", 1) for item in args.label)
    modes, rows = rows_of(args.sweeps, labels)
    print("Episode return, mean ± std over training seeds, the worst seed in brackets.\n")
    print(markdown(modes, rows, args.order))


if __name__ == "__main__":
    main()
