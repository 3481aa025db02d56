"""kit.models: the network and its files. backbones (timm + packaged weights), layers (GeM, SE), heads
(linear, ArcFace, sub-center ArcFace), losses (CE, focal, center), model (build from config), safe_load
(weights-only .pt loading), checkpoint (atomic save, checked load)."""
