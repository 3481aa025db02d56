# Screens of 2026-12-07 on the Oxford/Paris full bench layout (W, from bench/real.py --keep-work or its prepare_data),
# run from the repository root. pA = `kit run bench/results/real.recipe.yaml` (the default); pL0 / pL2 = its predict
# stage with tf_efficientnet_lite0 / lite2 at 384 px; pML = lite1 through mlpatch.py (GeM of blocks 4, 5, 6 + head).
set -e
W=${W:-bench/work/r_op}; export W
python bench/screens/mlpatch.py run bench/screens/ml.yaml --data-dir $W/data --work-dir $W/pML && python bench/screens/split.py
python bench/screens/knn.py $W/pA/recipe $W/pL2/recipe $W/pA/recipe+$W/pL2/recipe $W/pL0/recipe+$W/pA/recipe+$W/pL2/recipe \
  $W/pML_b6+$W/pML_head $W/pML_b5+$W/pML_b6+$W/pML_head
for mix in "E12:$W/pA/recipe $W/pL2/recipe" "E2:$W/pL2/recipe" "E012:$W/pL0/recipe $W/pA/recipe $W/pL2/recipe"; do
  N=${mix%%:*}; rm -rf $W/p$N; mkdir -p $W/p$N; cp -r $W/pA/folds $W/pA/recipe $W/p$N/
  python bench/screens/concat.py $W/p$N/recipe ${mix#*:}
  python -m kit run bench/results/real.recipe.yaml --data-dir $W/data --work-dir $W/p$N cache_dir=$W/cache | tail -2
done
for v in classes=5 per_class=10 candidates=20; do
  rm -rf $W/p$v; mkdir -p $W/p$v; cp -r $W/pA/folds $W/pA/recipe $W/p$v/
  python -m kit run bench/results/real.recipe.yaml --data-dir $W/data --work-dir $W/p$v cache_dir=$W/cache recipe_rerank.$v | tail -2
done
python bench/screens/noise.py
