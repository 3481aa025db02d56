"""`kit score SUBMISSION SOLUTION`: validate a submission and print accuracy, the offline test and GAP (last line)."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("score", help="score a submission.csv against a solution (GAP last line)",
                              description=__doc__)
    p.add_argument("submission", help="submission CSV: id,landmarks ('<landmark_id> <score>' or empty)")
    p.add_argument("solution", help="solution CSV: id,landmarks (space-separated ids, empty = non-landmark)[,Usage]")
    p.add_argument("--sample", help="sample_submission.csv: the submission must hold exactly its ids (default: none)")
    p.add_argument("--usage", choices=["all", "public", "private"], default="all",
                   help="with a Kaggle solution (Usage column): score only that subset (default all)")
    p.set_defaults(func=run, opencv=False)  # no images: no cv2 import


def run(args) -> int:
    from kit.errors import KitError
    from kit.metrics import index_in
    from kit.truth import summarize
    from kit.submission import read_sample_ids, read_solution, read_submission

    sample = read_sample_ids(args.sample) if args.sample else None
    sub = read_submission(args.submission, sample)
    sol = read_solution(args.solution)
    if args.usage != "all":
        if "usage" not in sol.columns:
            raise KitError(f"{args.solution}: --usage {args.usage} needs a Usage column")
        other = (sol["usage"].str.lower() != args.usage).to_numpy()
        sub = sub[index_in(sub["id"], sol["id"].to_numpy()[other]) < 0]
        sol = sol[~other]
    s = summarize(sub, sol)
    print(f"submission {args.submission}: {len(sub)} rows, {int((sub['label'] >= 0).sum())} predictions")
    print(f"solution {args.solution}: {s['n']} scored ids, {s['n_landmark']} landmark, "
          f"{s['n'] - s['n_landmark']} non-landmark")
    print(f"accuracy (landmark images) {s['accuracy']:.6f}")
    print(f"sensitivity {s['sensitivity']:.6f}  specificity {s['specificity']:.6f}")
    print(f"GAP {s['gap']:.6f}")
    return 0
