"""One markdown table from the records ``mask_quality.py --record DIR`` writes, over their seeds.

    python benchmarks/mask_table.py results/mask_quality/after
    python benchmarks/mask_table.py results/mask_quality/before results/mask_quality/after --source counterfactual

A row per record folder and task, a column per mode: the mean IoU / precision / recall over the seeds found
(``--source`` adapter, the default, or counterfactual), the worst seed's IoU and recall in brackets after their
means, so a reader sees the seed that fails beside the mean. A row names the folder, the preset, the image pool
and the commits of its records, and how many of its kept Transporters the collapse checks passed (with the
restarts they took). A mode a record did not measure shows a dash.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

MODES = ("train", "color_easy", "color_hard", "video_easy", "video_hard")
"""The columns of DeepMind Control records; others (DrawerWorld's textures) add the modes they hold."""


def load_records(folder: Path) -> dict[tuple[str, str], list[dict]]:
    """The records of ``folder`` grouped by (task, preset), each group in seed order."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        groups[record["task"], record["preset"]].append(record)
    return {key: sorted(records, key=lambda r: r["seed"]) for key, records in groups.items()}


def cell(records: list[dict], mode: str, source: str) -> str:
    """``IoU (worst) / precision / recall (worst)``: means over the seeds, the worst seed's IoU and recall in
    brackets. A mask set with no foreground at all has no precision (nan); the precision's mean then covers
    the other seeds and is marked ``*``."""
    if any(mode not in record["results"] for record in records):
        return "-"
    scores = [record["results"][mode][source] for record in records]
    with warnings.catch_warnings():  # every seed without foreground: the mean stays nan
        warnings.simplefilter("ignore", RuntimeWarning)
        means = [float(np.nanmean([score[key] for score in scores])) for key in ("iou", "precision", "recall")]
    undefined = "*" if any(math.isnan(score["precision"]) for score in scores) else ""
    worst_iou, worst_recall = min(score["iou"] for score in scores), min(score["recall"] for score in scores)
    return f"{means[0]:.2f} ({worst_iou:.2f}) / {means[1]:.2f}{undefined} / {means[2]:.2f} ({worst_recall:.2f})"


def transporters(records: list[dict]) -> str:
    """``healthy/seeds`` of the kept Transporters, ``+N`` restarts; a dash for records without the checks."""
    kept = [record.get("transporter", {}) for record in records]
    if not all("collapsed" in transporter for transporter in kept):
        return "-"
    healthy = sum(not transporter["collapsed"] for transporter in kept)
    restarts = sum(transporter.get("restarts", 0) for transporter in kept)
    return f"{healthy}/{len(kept)} healthy" + (f", {restarts} restart{'s' * (restarts != 1)}" if restarts else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="folders of mask_quality.py --record")
    parser.add_argument("--source", choices=("adapter", "counterfactual"), default="adapter")
    args = parser.parse_args()
    print(f"{args.source} masks: IoU (worst seed) / precision / recall (worst seed), mean over seeds\n")
    groups = [(folder, *group) for folder in args.folders for group in sorted(load_records(folder).items())]
    held = [mode for _, _, records in groups for record in records for mode in record["results"]]
    dmc = MODES if set(MODES[1:]) & set(held) else ()  # every DMC column, "-" where no record measured it
    modes = list(dict.fromkeys((*dmc, *held)))
    print("| records | task | seeds | Transporters | " + " | ".join(f"`{mode}`" for mode in modes) + " |")
    print("|---" * (4 + len(modes)) + "|")
    for folder, (task, preset), records in groups:
        commits = ", ".join(sorted({record["commit"] for record in records}))
        pool = ", ".join(sorted({record["backgrounds"].split(" (")[0] for record in records}))
        seeds = ", ".join(str(record["seed"]) for record in records)
        label = f"{folder.name} ({preset}, {pool}, {commits})"
        cells = " | ".join(cell(records, mode, args.source) for mode in modes)
        print(f"| {label} | {task} | {seeds} | {transporters(records)} | {cells} |")


if __name__ == "__main__":
    main()
