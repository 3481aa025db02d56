"""kit.models: the network and its files: backbones, pooling, heads, losses, checkpoints."""
