"""kit.inference: trained model -> prediction files (engine, predict), retrieval over embeddings (search,
retrieval, expansion) and spatial re-ranking (rerank, candidates, fusion, calibration)."""
