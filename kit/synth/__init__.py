"""`kit synth`: a deterministic procedural landmark data set in GLDv2 layout: structures, views, scenes, dataset."""
from kit.synth.dataset import generate, long_tail_counts, make_ids, plan, render_image, summary_line
from kit.synth.scenes import SCENES
from kit.synth.structures import KINDS, make_structure
from kit.synth.views import photometric, random_homography, render_view, warp_view

__all__ = ["generate", "long_tail_counts", "make_ids", "plan", "render_image", "summary_line", "SCENES", "KINDS",
           "make_structure", "photometric", "random_homography", "render_view", "warp_view"]
