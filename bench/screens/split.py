import os
import sys, numpy as np, shutil
from pathlib import Path
from kit.predictions import load_predictions, save_predictions, Predictions
W = Path(os.environ.get('W', 'bench/work/r_op'))
dims = {'b4': (0, 112), 'b5': (112, 304), 'b6': (304, 624), 'head': (624, 1904)}
for name, (a, b) in dims.items():
    d = W / f'pML_{name}'; d.mkdir(exist_ok=True)
    for s in ('train', 'val', 'test', 'distractors'):
        p = load_predictions(W / 'pML/recipe' / f'{s}.npz')
        assert p.embeddings.shape[1] == 1904, p.embeddings.shape
        save_predictions(Predictions(p.ids, p.labels, p.scores, p.embeddings[:, a:b].copy()), d / f'{s}.npz')
