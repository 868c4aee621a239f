"""What every stylecam command line shares: the ``--help`` layout and the frame-size
argument (torch-free, so the server's commands use them too)."""

from __future__ import annotations

import argparse
import re


class UsageError(ValueError):
    """Flags that do not fit together, or that name what is not there; the message names the flag and the fix."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends each option's default to its help, unless the help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "(default" in text or action.default is None else super()._get_help_string(action) or ""


def frame_size(text: str) -> tuple[int, int]:
    """An argparse type: WIDTHxHEIGHT, each side at least 16 (what the exported graphs accept)."""
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not match or min(int(match[1]), int(match[2])) < 16:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 640x480, sides >= 16)")
    return int(match[1]), int(match[2])
