"""`kit retrieve {knn,centroids} --index TRAIN.npz --labels CSV --query QUERY.npz --out PRED.npz`.

Retrieval predictions from embeddings (kit.inference.retrieval): `knn` votes among the k nearest train images
(report 002); `centroids` scores each class by its nearest centroid (Mail.ru report 004, several
centroids per class from agglomerative clustering), below --threshold = no landmark. The index file
is usually `kit predict --split train`'s output; --labels gives its images' landmark ids (folds CSV
or train.csv: id,landmark_id).
"""
from __future__ import annotations


def add_parser(subparsers) -> None:
    from kit.inference.retrieval import RETRIEVERS

    p = subparsers.add_parser("retrieve", help="kNN / centroid predictions from embeddings", description=__doc__)
    p.add_argument("method", choices=list(RETRIEVERS))
    p.add_argument("--index", required=True, help="prediction .npz with embeddings of labelled images")
    p.add_argument("--labels", required=True, help="CSV with id,landmark_id for the index images")
    p.add_argument("--query", required=True, help="prediction .npz with embeddings of the images to label")
    p.add_argument("--out", required=True, help="prediction .npz to write")
    p.add_argument("--submission", help="also write the top-1 as a submission CSV")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--k", type=int, default=10, help="knn: neighbours that vote (10)")
    p.add_argument("--power", type=float, default=1.0, help="knn: vote = similarity ** power (1)")
    p.add_argument("--distance-threshold", type=float, default=0.5,
                   help="centroids: cosine distance cut of the complete-linkage clustering (0.5)")
    p.add_argument("--min-cluster-size", type=int, default=50, help="centroids: members of a valid cluster (50)")
    p.add_argument("--threshold", type=float, help="centroids: similarity below it = no landmark")
    p.add_argument("--jobs", type=int, default=1, help="centroids: parallel clustering jobs")
    p.set_defaults(func=run)


def run(args) -> int:
    from kit.inference.retrieval import fit_retriever
    from kit.predictions import load_predictions, save_predictions
    from kit.submission import write_submission

    kw = ({"k": args.k, "power": args.power} if args.method == "knn" else
          {"distance_threshold": args.distance_threshold, "min_cluster_size": args.min_cluster_size,
           "threshold": args.threshold, "n_jobs": args.jobs})
    model = fit_retriever(args.method, load_predictions(args.index), args.labels, **kw)
    query = load_predictions(args.query)
    if query.embeddings is None:
        from kit.errors import KitError

        raise KitError(f"{args.query}: no embeddings in this prediction file")
    pred = model.predict(query.ids, query.embeddings, topk=args.topk)
    save_predictions(pred, args.out)
    print(f"wrote {args.out} ({len(pred)} images, {args.method} over {len(model.index)} vectors, {model.index.kind})")
    if args.submission:
        write_submission(pred, args.submission)
        print(f"wrote {args.submission}")
    return 0
