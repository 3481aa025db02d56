"""`kit rerank --query Q.npz --index TRAIN.npz [VAL.npz] --labels CSV --data-dir DATA --out OUT.npz`.

Spatial re-ranking (kit.inference.rerank): each query's --candidates nearest index images (with the --agg/--qe/--dba
switches of `kit retrieve knn`) are verified with local features + RANSAC (--verifier), then fused with the kNN
result: --fusion calibrated (default), a logistic model fitted on validation by the recipe's rerank stage
(--calibration), ranks the classes and is the confidence; evidence (without a model) lifts a verified kNN class and
lets another replace it only with an inlier margin >= --switch-margin; sum adds an inlier term to the similarity.
Also writes OUT.inliers.npz (neighbours, inliers, top_inliers of the predicted class) for non-landmark scoring.
"""
from __future__ import annotations

from kit.commands import add_retrieval_arguments, dataclass_from_flags, renamed, write_top1


def add_parser(subparsers) -> None:
    from kit.inference.rerank import FUSIONS, VERIFIERS, RerankConfig
    from kit.localfeatures.matching import ROBUST, TRANSFORMS

    d = RerankConfig()
    p = subparsers.add_parser("rerank", help="re-rank retrieval by local-feature spatial verification",
                              description=__doc__)
    add_retrieval_arguments(p)
    p.add_argument("--data-dir", required=True, help="GLDv2-layout folder holding the images (train/, test/, ...)")
    p.add_argument("--verifier", choices=list(VERIFIERS), default=d.verifier, help="local features")
    p.add_argument("--candidates", type=int, default=d.candidates, help="nearest index images verified per query")
    p.add_argument("--classes", type=int, default=d.classes,
                   help="also verify the --per-class most similar images of this many top classes")
    p.add_argument("--per-class", type=int, default=d.per_class, help="images per class (0 = off)")
    p.add_argument("--weight", type=float, default=d.weight, help="inlier term weight")
    p.add_argument("--cap", type=float, default=d.cap, help="inliers at which the term saturates")
    p.add_argument("--min-inliers", type=int, default=d.min_inliers, help="fewer inliers: the class is not verified")
    p.add_argument("--margin", type=float, default=d.margin,
                   help="inlier evidence = inliers - MARGIN x the best other class's inliers (0 = raw)")
    p.add_argument("--fusion", choices=FUSIONS, default=d.fusion,
                   help="calibrated (evidence without --calibration), evidence or sum: see above")
    p.add_argument("--calibration", help="calibration.json of a recipe's rerank stage (default: none)")
    p.add_argument("--switch-margin", type=float, default=d.switch_margin,
                   help="evidence fusion: inlier margin a verified class needs to replace the kNN class")
    g = p.add_argument_group("verification (local features)")
    g.add_argument("--ratio", type=float, default=d.ratio, help="Lowe's ratio test")
    g.add_argument("--transform", choices=TRANSFORMS, default=d.transform, help="RANSAC model")
    g.add_argument("--robust", choices=ROBUST, default=d.robust, help="robust estimator")
    g.add_argument("--ransac-threshold", type=float, default=d.ransac_threshold, help="pixels")
    g.add_argument("--image-size", type=int, help="local-feature working size (default: sift 512, delf 320)")
    g.add_argument("--max-keypoints", type=int, help="sift: keypoints per image (default 1000)")
    g.add_argument("--delf", help="delf: attention head from `kit train-delf` (default: feature-norm scores)")
    g.add_argument("--cache-dir", default="auto", help="feature cache dir (default auto: $KIT_CACHE_DIR or ~/.cache/kit/localfeatures; none = no cache)")
    g.add_argument("--threads", type=int, default=d.threads, help="matching threads")
    p.add_argument("--references", nargs="+",
                   help="prediction .npz file(s) of photos like the queries' non-landmarks (default: the queries)")
    p.add_argument("--reference-k", type=int, default=d.reference_k, help="nearest references averaged")
    p.add_argument("--reference-weight", type=float, default=d.reference_weight,
                   help="weight of the reference term on unverified rows (0 = off)")
    renamed(p, top_n="--candidates", jobs="--threads")
    p.set_defaults(func=run)


def run(args) -> int:
    from kit.pipeline.stages.retrieval import RerankSettings, rerank_files

    s = dataclass_from_flags(RerankSettings, args)
    r = rerank_files(s, args.index, args.labels, args.query, args.data_dir, args.cache_dir, args.references or (),
                     args.out)
    side = str(args.out).removesuffix(".npz") + ".inliers.npz"
    print(f"wrote {args.out} and {side} ({len(r.predictions)} images, {r.seconds['pairs']} pairs verified, "
          f"features {r.seconds['search_and_features']:.1f} s, matching {r.seconds['matching']:.1f} s)")
    write_top1(r.predictions, args.submission)
    return 0
