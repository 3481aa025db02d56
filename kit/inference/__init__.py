"""kit.inference: trained model -> prediction files. engine (batched forward + TTA), predict (the
`kit predict` stage), retrieval (faiss kNN and class-centroid predictors over embeddings); spatial
re-ranking: rerank (settings and steps), candidates (which index images are verified), fusion (kNN +
inliers -> classes and scores), calibration (the fusion fitted on validation)."""
