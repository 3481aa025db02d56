"""`kit synth --out-dir DIR`: write the embedded synthetic landmark data set (GLDv2 layout)."""
from __future__ import annotations

from kit.commands import renamed

# (flag, type, default, help): the data set's settings, keyword arguments of kit.synth.generate
SETTINGS = [("classes", int, 60, "number of landmark classes"),
            ("images", int, 3000, "train images in total, long-tailed over classes"),
            ("test-images", int, 600, "test images"),
            ("distractor-images", int, 200, "extra non-landmark images in distractors/ for fitting filters"),
            ("size", int, 128, "image side in pixels"),
            ("nonlandmark-frac", float, 0.8, "share of test images that are non-landmarks"),
            ("train-noise", float, 0.05, "share of train images that are off-topic scenes"),
            ("zipf", float, 1.1, "long-tail exponent of images per class"),
            ("family-frac", float, 0.6,
             "look-alike families per class: classes of a family share kind, palette and textures"),
            ("seed", int, 0, "random seed; same seed = identical files")]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("synth", help="generate the synthetic GLDv2-layout landmark data set",
                              description="Generate a deterministic procedural landmark data set: train.csv, "
                                          "train/a/b/c/<id>.jpg, test/..., sample_submission.csv, test_solution.csv.")
    p.add_argument("--out-dir", default="data/synth", help="output folder (default: data/synth)")
    for flag, kind, default, text in SETTINGS:
        p.add_argument(f"--{flag}", type=kind, default=default, help=f"{text} (default: {default})")
    p.add_argument("--workers", type=int, default=None,
                   help="processes drawing the images (default: CPU count, at most 8)")
    p.add_argument("--reuse", action="store_true",
                   help="keep OUT_DIR as is if it was generated with the same parameters")
    renamed(p, out="--out-dir", distractors="--distractor-images", jobs="--workers")
    p.set_defaults(func=run)


def run(args) -> int:
    from kit.synth import generate, summary_line

    kw = {name: getattr(args, name) for name in (flag.replace("-", "_") for flag, *_ in SETTINGS)}
    kw["distractors"] = kw.pop("distractor_images")
    print(summary_line(generate(args.out_dir, workers=args.workers, force=not args.reuse, **kw)))
    return 0
