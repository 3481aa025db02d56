"""DELF (Noh et al. 2017; reports 001, 003): attention-selected local descriptors from a kit backbone: nets
(the attention head), extractor (image pyramid -> keypoints), file (`delf.pt` and its PCA), train."""
