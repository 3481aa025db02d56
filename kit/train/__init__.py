"""kit.train: fitting one model on one fold: loop, epoch, schedule, optim, log, distributed."""
