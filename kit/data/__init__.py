"""kit.data: what goes into training. folds (class subsets + stratified nested folds of train.csv),
dataset (folds CSV + GLDv2 image layout -> DataLoaders), augment (albumentations pipelines by name)."""
