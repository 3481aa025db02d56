"""kit.inference: trained model -> prediction files. engine (batched forward + TTA), predict (the
`kit predict` stage), retrieval (faiss kNN and class-centroid predictors over embeddings)."""
