"""The browser page (static files), shipped as package data of stylecam."""
