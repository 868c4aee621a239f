"""Torch-free serving: onnxruntime sessions behind an aiohttp + aiortc server."""
