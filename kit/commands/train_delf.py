"""`kit train-delf --config CONFIG --fold N [key=value ...]`: train the DELF attention head.

The backbone of runs/<name>/fold<N>/best.pt (or, with no trained run, the configured pretrained one)
stays frozen; the attention + a linear classifier train for a few epochs on fold N's training rows with
`kit train`'s loop (AdamW at --lr, the config's optim.schedule, AMP on CUDA, checkpoints and metrics in
runs/<name>/fold<N>/delf/, --resume), then a PCA of the selected descriptors is fitted on training images.
Writes runs/<name>/fold<N>/delf.pt.
"""
from __future__ import annotations

from kit.commands import add_config_arguments


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train-delf", help="train the DELF attention head on a frozen backbone",
                              description=__doc__)
    add_config_arguments(p, fold_help="the trained fold whose backbone DELF attends over: runs/<name>/fold<N>/best.pt")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of the attention head")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    p.add_argument("--hidden", type=int, default=512, help="attention hidden channels")
    p.add_argument("--stride", type=int, default=16, help="backbone stage to attend over (its stride)")
    p.add_argument("--pca-dim", type=int, default=40, help="descriptor dimension after PCA; 0 = no PCA")
    p.add_argument("--no-whiten", action="store_true", help="PCA without whitening")
    p.add_argument("--pca-images", type=int, default=200, help="training images to fit the PCA on")
    p.add_argument("--out", help="delf.pt to write (default runs/<name>/fold<N>/delf.pt)")
    p.add_argument("--resume", action="store_true", help="continue from runs/<name>/fold<N>/delf/last.pt")
    p.set_defaults(func=run)


def run(args) -> int:
    from kit.config import load_config
    from kit.localfeatures.delf.train import train_delf

    cfg = load_config(args.config, args.overrides)
    path = train_delf(cfg, args.fold, epochs=args.epochs, lr=args.lr, hidden=args.hidden, stride=args.stride,
                      pca_dim=args.pca_dim, whiten=not args.no_whiten, pca_images=args.pca_images, out=args.out,
                      resume=args.resume)
    print(f"wrote {path}")
    return 0
