"""kit.train: fitting one model on one fold. loop (epochs, evaluation, best checkpoint, OOF predictions,
resume), schedule (LR as a function of the step), log (metrics.csv, TensorBoard, curves.png), distributed
(torchrun process group)."""
