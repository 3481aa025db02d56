"""DELF (Noh et al. 2017; reports 001, 003): attention-selected local descriptors from a kit backbone.

nets (the attention head on a frozen backbone stage), extractor (image pyramid -> keypoints and descriptors),
file (`delf.pt` and the descriptor PCA as plain arrays), train (the head trained by kit.train.loop).
"""
