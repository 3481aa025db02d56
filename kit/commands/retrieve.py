"""`kit retrieve {knn,centroids} --index TRAIN.npz [MORE.npz ...] --labels CSV --query QUERY.npz --out PRED.npz`.

Retrieval predictions from embeddings, in a classifier's file format (ensemble, filter and re-rank inputs): `knn`
votes among the k nearest index images (report 002; --agg max or sum), optionally with DBA (--dba K) and alpha query
expansion (--qe K); `centroids` scores each class by its nearest centroid (Mail.ru report 004), below --threshold =
no landmark. The index files are `kit predict --split train` (and val) outputs of one run; --labels: their landmark ids.
"""
from __future__ import annotations

from kit.commands import add_retrieval_arguments, dataclass_from_flags, renamed, write_top1


def add_parser(subparsers) -> None:
    from kit.inference.retrieval import RETRIEVERS
    from kit.inference.search import BACKENDS

    p = subparsers.add_parser("retrieve", help="kNN / centroid predictions from embeddings", description=__doc__)
    p.add_argument("method", choices=list(RETRIEVERS), help="knn: neighbours vote; centroids: nearest class centroid")
    add_retrieval_arguments(p)
    p.add_argument("--k", type=int, default=10, help="knn: neighbours that vote")
    p.add_argument("--power", type=float, default=1.0, help="knn: vote = similarity ** power")
    p.add_argument("--distance-threshold", type=float, default=0.5,
                   help="centroids: cosine distance cut of the complete-linkage clustering")
    p.add_argument("--min-cluster-size", type=int, default=50, help="centroids: members of a valid cluster")
    p.add_argument("--threshold", type=float, help="centroids: similarity below it = no landmark (default: off)")
    p.add_argument("--workers", type=int, default=1, help="centroids: processes clustering the classes")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="search: faiss (IVF above 200k vectors on CPU, exact on a GPU), torch (exact blocked scan), "
                        "auto (= faiss, except the torch scan above 200k vectors on a CPU with native bf16)")
    renamed(p, jobs="--workers")
    p.set_defaults(func=run)


def run(args) -> int:
    from kit.pipeline.stages.retrieval import RetrieveSettings, fit_index, query_embeddings
    from kit.predictions import save_predictions

    s = dataclass_from_flags(RetrieveSettings, args)
    model = fit_index(s, args.index, args.labels, args.workers)
    query = query_embeddings(args.query)
    pred = model.predict(query.ids, query.embeddings, topk=args.topk)
    save_predictions(pred, args.out)
    print(f"wrote {args.out} ({len(pred)} images, {args.method} over {len(model.index)} vectors, {model.index.kind})")
    write_top1(pred, args.submission)
    return 0
