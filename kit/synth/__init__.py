"""`kit synth`: a deterministic procedural landmark data set in the GLDv2 Kaggle layout.

structures.py draws one canonical structure per class, views.py photographs it through a random
homography (scale, crop, occlusion, clutter, lighting), scenes.py makes the non-landmark images and
backgrounds, dataset.py plans the long-tailed splits and writes images + CSVs in parallel."""
from kit.synth.dataset import generate, long_tail_counts, make_ids, plan, render_image, summary_line
from kit.synth.scenes import SCENES
from kit.synth.structures import KINDS, make_structure, structure_kind
from kit.synth.views import photometric, random_homography, render_view, warp_view

__all__ = ["generate", "long_tail_counts", "make_ids", "plan", "render_image", "summary_line", "SCENES", "KINDS",
           "make_structure", "structure_kind", "photometric", "random_homography", "render_view", "warp_view"]
