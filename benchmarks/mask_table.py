"""One markdown table from the records ``mask_quality.py --record DIR`` writes, over their seeds.

    python benchmarks/mask_table.py results/mask_quality/after
    python benchmarks/mask_table.py results/mask_quality/before results/mask_quality/after --source counterfactual

A row per record folder and task, a column per mode: the mean IoU / precision / recall over the seeds found
(``--source`` adapter, the default, or counterfactual), followed by each seed's IoU, so a reader sees the spread
behind the mean. A row names the folder, the preset, the image pool and the commits of its records.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

MODES = ("train", "color_hard", "video_easy", "video_hard")


def load_records(folder: Path) -> dict[tuple[str, str], list[dict]]:
    """The records of ``folder`` grouped by (task, preset), each group in seed order."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        groups[record["task"], record["preset"]].append(record)
    return {key: sorted(records, key=lambda r: r["seed"]) for key, records in groups.items()}


def cell(records: list[dict], mode: str, source: str) -> str:
    """``IoU / precision / recall`` (means) then the seeds' IoUs in brackets. A mask set with no foreground
    at all has no precision (nan); the precision's mean then covers the other seeds and is marked ``*``."""
    scores = [record["results"][mode][source] for record in records]
    with warnings.catch_warnings():  # every seed without foreground: the mean stays nan
        warnings.simplefilter("ignore", RuntimeWarning)
        means = [float(np.nanmean([score[key] for score in scores])) for key in ("iou", "precision", "recall")]
    undefined = "*" if any(math.isnan(score["precision"]) for score in scores) else ""
    seeds = ", ".join(f"{score['iou']:.2f}" for score in scores)
    return f"{means[0]:.2f} / {means[1]:.2f}{undefined} / {means[2]:.2f} ({seeds})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="folders of mask_quality.py --record")
    parser.add_argument("--source", choices=("adapter", "counterfactual"), default="adapter")
    args = parser.parse_args()
    print(f"{args.source} masks: IoU / precision / recall, mean over seeds (each seed's IoU)\n")
    print("| records | task | seeds | " + " | ".join(f"`{mode}`" for mode in MODES) + " |")
    print("|---" * (3 + len(MODES)) + "|")
    for folder in args.folders:
        for (task, preset), records in sorted(load_records(folder).items()):
            commits = ", ".join(sorted({record["commit"] for record in records}))
            pool = ", ".join(sorted({record["backgrounds"].split(" (")[0] for record in records}))
            seeds = ", ".join(str(record["seed"]) for record in records)
            label = f"{folder.name} ({preset}, {pool}, {commits})"
            cells = " | ".join(cell(records, mode, args.source) for mode in MODES)
            print(f"| {label} | {task} | {seeds} | {cells} |")


if __name__ == "__main__":
    main()
