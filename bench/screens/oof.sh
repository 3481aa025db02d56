# Screen of 2026-12-07: the calibration fitted also on each training fold queried against the other training folds
# (`recipe_rerank.oof=true`, kit/pipeline/stages/retrieval.py `oof_features`) vs the default, on the cached full
# bench layouts (bench/real.py --keep-work), run from the repository root. pB = the default's rerank stage re-scored;
# pO = the variant (only the rerank stage re-runs; local features come from the layout's cache).
set -e
for s in ${SETS:-r_op r_ox r_pa r_po r_ng}; do
  W=bench/work/$s; D=$W/data; [ -d $W/data_view ] && D=$W/data_view
  P=$W/pA; [ -d $W/pipeline ] && P=$W/pipeline
  for N in B O; do
    rm -rf $W/p$N; mkdir -p $W/p$N; cp -r $P/folds $P/recipe $W/p$N/
    [ $N = B ] && cp -r $P/recipe_rerank $W/p$N/ && extra= || extra=recipe_rerank.oof=true
    python -m kit run bench/results/real.recipe.yaml --data-dir $D --work-dir $W/p$N cache_dir=$W/cache $extra | tail -1
    python bench/screens/score.py $D $W/p$N
  done
done
