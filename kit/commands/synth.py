"""`kit synth --out-dir DIR`: write the embedded synthetic landmark data set (GLDv2 layout)."""
from __future__ import annotations

from kit.commands import renamed


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("synth", help="generate the synthetic GLDv2-layout landmark data set",
                              description="Generate a deterministic procedural landmark data set: "
                                          "train.csv, train/a/b/c/<id>.jpg, test/..., sample_submission.csv, test_solution.csv.")
    p.add_argument("--out-dir", default="data/synth", help="output folder (default: data/synth)")
    p.add_argument("--classes", type=int, default=60, help="number of landmark classes (default: 60)")
    p.add_argument("--images", type=int, default=3000, 
                   help="train images in total, long-tailed over classes (default: 3000)")
    p.add_argument("--test-images", type=int, default=600, help="test images (default: 600)")
    p.add_argument("--distractor-images", type=int, default=200,
                   help="extra non-landmark images in distractors/ for fitting filters (default: 200)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    p.add_argument("--nonlandmark-frac", type=float, default=0.8, 
                   help="share of test images that are non-landmarks (default: 0.8)")
    p.add_argument("--train-noise", type=float, default=0.05, help="share of train images that are off-topic scenes (default: 0.05)")
    p.add_argument("--zipf", type=float, default=1.1, help="long-tail exponent of images per class (default: 1.1)")
    p.add_argument("--family-frac", type=float, default=0.6,
                   help="look-alike families per class: classes of a family share kind, palette and textures (default: 0.6)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed = identical files (default: 0)")
    p.add_argument("--workers", type=int, default=None, help="processes drawing the images (default: CPU count, at most 8)")
    p.add_argument("--reuse", action="store_true", help="keep OUT_DIR as is if it was generated with the same parameters")
    renamed(p, out="--out-dir", distractors="--distractor-images", jobs="--workers")
    p.set_defaults(func=run)


def run(args) -> int:
    from kit.synth import generate, summary_line

    summary = generate(args.out_dir, classes=args.classes, images=args.images, test_images=args.test_images,
                       size=args.size, nonlandmark_frac=args.nonlandmark_frac, train_noise=args.train_noise,
                       zipf=args.zipf, seed=args.seed, family_frac=args.family_frac, workers=args.workers, force=not args.reuse,
                       distractors=args.distractor_images)
    print(summary_line(summary))
    return 0
