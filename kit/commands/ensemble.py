"""`kit ensemble METHOD [FILES...] --out PATH`: combine prediction files / submission CSVs (report 001 + soft).

Methods (kit.ensemble.rules.ENSEMBLES): max, correct (FILES[0] top-18k base, FILES[1] top-2k), boost
(--alpha), weighted (--weights, or GAP weights), soft (weights fitted to maximise GAP). Writes
ensembles/<METHOD>.npz and the submission CSV --out.

The output keeps the embeddings of FILES[0] (if it has them), so a filter can use that model's train embeddings.
Weights (weighted, soft) when --weights is not given: with --solution, each model's GAP (weighted) or
the GAP-maximising simplex weights (soft), measured on the --fit-on files (OOF/val predictions of the
same models, same order) or else on FILES. With no FILES, the newest test_*.npz of every experiment
in predictions/ is used, weighted by its validation GAP: the mean over its val_fold<N>.npz (else
oof_fold<N>.npz) files, scored against --solution or the folds CSV in runs/<exp>/fold<N>/config.yaml.
--solution also prints each input's GAP and the ensemble's (score on OOF before running on test).
"""
from __future__ import annotations


def add_parser(subparsers) -> None:
    from kit.ensemble.rules import ENSEMBLES

    p = subparsers.add_parser("ensemble", help="ensemble prediction files (max, correct, boost, weighted, soft)",
                              description=__doc__)
    p.add_argument("method", choices=list(ENSEMBLES), help="ensemble rule (see above)")
    p.add_argument("files", nargs="*", help="prediction .npz files or submission CSVs (none: discover, see above)")
    p.add_argument("--out", default="submission.csv", help="submission CSV to write (default submission.csv)")
    p.add_argument("--weights", type=float, nargs="+", help="one per file: `--weights 0.6 0.4` (default: see above)")
    p.add_argument("--alpha", type=float, default=0.5, help="boost: scale of the agreeing models' scores")
    p.add_argument("--solution", help="truth: solution CSV (id,landmarks) or folds/train CSV (id,landmark_id) (default: none)")
    p.add_argument("--fit-on", nargs="+", default=[], metavar="FILE",
                   help="OOF/val predictions of the same models to fit weights on and score (needs --solution; default: FILES)")
    p.add_argument("--topk", type=int, help="soft: labels kept per image (default: the inputs' largest k)")
    p.add_argument("--step", type=float, default=0.1, help="soft: weight grid step on the simplex")
    p.add_argument("--ensembles-dir", default="ensembles", help="where ensembles/<METHOD>.npz is written")
    p.add_argument("--predictions-dir", default="predictions", help="predictions/<exp>/ searched when no FILES")
    p.add_argument("--runs-dir", default="runs", help="runs/<exp>/fold<N>/config.yaml: the folds CSV of each experiment")
    p.set_defaults(func=run, opencv=False)  # no images: no cv2 import


def run(args) -> int:
    from kit.ensemble.rules import run_ensemble
    from kit.errors import KitError

    if args.fit_on and not args.solution:
        raise KitError("ensemble: --fit-on needs --solution (the truth of the fit-on images)")
    run_ensemble(args.method, args.files, out=args.out, weights=args.weights, alpha=args.alpha,
                 solution=args.solution, fit_on=args.fit_on, topk=args.topk, step=args.step,
                 ensembles_dir=args.ensembles_dir, predictions_dir=args.predictions_dir, runs_dir=args.runs_dir)
    return 0
