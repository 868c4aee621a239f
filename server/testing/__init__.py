"""Clients that drive a running server from outside, as a browser or OBS would: the page's
WebRTC peer with a counter camera, a WHIP publisher and WHEP viewers, a server subprocess.
The tests and the benchmarks use them; the server itself never imports this package."""
