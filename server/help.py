"""The ``--help`` layout every stylecam command shares (torch-free, so the server's commands use it too)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends each option's default to its help, unless the help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "(default" in text or action.default is None else super()._get_help_string(action) or ""
