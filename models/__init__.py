"""PyTorch side of stylecam: networks, losses, data and training."""
