"""kit.data: what goes into training: folds of train.csv, DataLoaders, augmentation pipelines."""
