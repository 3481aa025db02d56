"""`kit rerank --query Q.npz --index TRAIN.npz [VAL.npz] --labels CSV --data-dir DATA --out OUT.npz`.

Spatial re-ranking (kit.inference.rerank): each query's --top-n nearest index images (global embeddings,
with the same --agg/--qe/--dba switches as `kit retrieve knn`) are verified with local features + RANSAC
(--verifier sift | delf). --fusion evidence (default): verification only adds to the kNN result: a row whose
kNN class is verified (>= --min-inliers) rises to its kNN score + weight * min(e, cap) / cap (e = inliers
beyond the best other class's: the inlier margin); another class replaces the kNN class only when it is
verified with e >= --switch-margin; every other row is the kNN row, unchanged (same class, same score).
--fusion sum: classes re-ranked by max(sim + weight * min(e, cap) / cap) over their neighbours.
With --reference-weight > 0, unverified rows then lose that x their mean cosine to the --reference-k most
similar --references images (default: the other queries), GLR 2020's out-of-domain scoring (off by
default: it reorders the unverified rows). Also writes OUT.inliers.npz (ids, neighbours, inliers [Q, N], top_inliers = best
inliers of the predicted class, reference) for non-landmark scoring.
"""
from __future__ import annotations


def add_parser(subparsers) -> None:
    from kit.inference.rerank import FUSIONS, VERIFIERS, RerankConfig
    from kit.localfeatures.matching import ROBUST, TRANSFORMS

    d = RerankConfig()
    p = subparsers.add_parser("rerank", help="re-rank retrieval by local-feature spatial verification", description=__doc__)
    p.add_argument("--query", required=True, help="prediction .npz with embeddings of the images to label")
    p.add_argument("--index", required=True, nargs="+", help="prediction .npz file(s) with embeddings of labelled images")
    p.add_argument("--labels", required=True, help="CSV with id,landmark_id for the index images")
    p.add_argument("--data-dir", required=True, help="GLDv2-layout folder holding the images (train/, test/, ...)")
    p.add_argument("--out", required=True, help="prediction .npz to write")
    p.add_argument("--submission", help="also write the top-1 as a submission CSV")
    p.add_argument("--verifier", choices=list(VERIFIERS), default=d.verifier, help=f"local features ({d.verifier})")
    p.add_argument("--top-n", type=int, default=d.top_n, help=f"neighbours verified per query ({d.top_n})")
    p.add_argument("--classes", type=int, default=d.classes,
                   help=f"also verify the --per-class most similar images of this many top classes ({d.classes})")
    p.add_argument("--per-class", type=int, default=d.per_class, help=f"images per class (0 = off) ({d.per_class})")
    p.add_argument("--weight", type=float, default=d.weight, help=f"inlier term weight ({d.weight})")
    p.add_argument("--cap", type=float, default=d.cap, help=f"inliers at which the term saturates ({d.cap})")
    p.add_argument("--min-inliers", type=int, default=d.min_inliers,
                   help=f"fewer inliers: the class is not verified ({d.min_inliers})")
    p.add_argument("--margin", type=float, default=d.margin,
                   help=f"inlier evidence = inliers - MARGIN x the best other class's inliers (0 = raw) ({d.margin})")
    p.add_argument("--fusion", choices=FUSIONS, default=d.fusion,
                   help=f"evidence: verification only lifts or (on strong evidence) re-classifies the kNN result; "
                        f"sum: classes re-ranked by similarity + inlier term ({d.fusion})")
    p.add_argument("--switch-margin", type=float, default=d.switch_margin,
                   help=f"evidence fusion: inlier margin a verified class needs to replace the kNN class "
                        f"({d.switch_margin:g})")
    p.add_argument("--near-cut", type=int, default=d.near_cut,
                   help=f"queries whose best pair has NEAR_CUT..min-inliers-1 inliers get a second look: their "
                        f"--near-top-n neighbours and --near-per-class images of each top class (0 = off) ({d.near_cut})")
    p.add_argument("--near-top-n", type=int, default=d.near_top_n, help=f"({d.near_top_n})")
    p.add_argument("--near-per-class", type=int, default=d.near_per_class, help=f"({d.near_per_class})")
    p.add_argument("--ratio", type=float, default=d.ratio, help=f"Lowe's ratio test ({d.ratio})")
    p.add_argument("--transform", choices=TRANSFORMS, default=d.transform, help=f"({d.transform})")
    p.add_argument("--robust", choices=ROBUST, default=d.robust, help=f"robust estimator ({d.robust})")
    p.add_argument("--ransac-threshold", type=float, default=d.ransac_threshold, help=f"pixels ({d.ransac_threshold})")
    p.add_argument("--image-size", type=int, help="local-feature working size (sift 512, delf 320)")
    p.add_argument("--max-keypoints", type=int, help="sift: keypoints per image (1000)")
    p.add_argument("--delf", help="delf: attention head from `kit train-delf` (default: feature-norm scores)")
    p.add_argument("--cache-dir", default="auto", help="feature cache dir (default auto: $KIT_CACHE_DIR or ~/.cache/kit/localfeatures; none = no cache)")
    p.add_argument("--jobs", type=int, default=d.n_jobs, help=f"matching threads ({d.n_jobs})")
    p.add_argument("--references", nargs="+",
                   help="prediction .npz file(s) of photos like the queries' non-landmarks (default: the queries)")
    p.add_argument("--reference-k", type=int, default=d.reference_k, help=f"references averaged ({d.reference_k})")
    p.add_argument("--reference-weight", type=float, default=d.reference_weight,
                   help=f"weight of the reference term on unverified rows (0 = off) ({d.reference_weight})")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--agg", default="max", choices=("sum", "max"), help="knn search switches as in `kit retrieve`")
    p.add_argument("--qe", type=int, default=0)
    p.add_argument("--qe-alpha", type=float, default=3.0)
    p.add_argument("--dba", type=int, default=0)
    p.add_argument("--dba-alpha", type=float, default=3.0)
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from kit.pipeline.stages.retrieval import RerankSettings, rerank_files
    from kit.submission import write_submission

    names = {f.name for f in dataclasses.fields(RerankSettings)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    s = RerankSettings(**given, n_jobs=args.jobs)   # the flags are the settings' fields (jobs: n_jobs)
    r = rerank_files(s, args.index, args.labels, args.query, args.data_dir, args.cache_dir, args.references or (),
                     args.out)
    side = (str(args.out)[:-4] if str(args.out).endswith(".npz") else str(args.out)) + ".inliers.npz"
    print(f"wrote {args.out} and {side} ({len(r.predictions)} images, {r.seconds['pairs']} pairs verified, "
          f"features {r.seconds['search_and_features']:.1f} s, matching {r.seconds['matching']:.1f} s)")
    if args.submission:
        write_submission(r.predictions, args.submission)
        print(f"wrote {args.submission}")
    return 0
