"""What every command line shares (``server/help.py``): the frame-size argument and the help layout."""

import argparse

import pytest

from stylecam.server.help import HelpFormatter, frame_size


@pytest.mark.parametrize("text, size", [("640x480", (640, 480)), (" 320X240 ", (320, 240)), ("16x16", (16, 16))])
def test_frame_size_reads_width_then_height(text, size):
    assert frame_size(text) == size


@pytest.mark.parametrize("text", ["wide", "640x", "x480", "15x240", "320x15", "640x480x3", "-640x480", "640*480"])
def test_frame_size_refuses_what_is_not_two_sides_of_16_or_more(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not WIDTHxHEIGHT"):
        frame_size(text)


def test_help_shows_each_default_once():
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--size", type=frame_size, default=(640, 480), help="frame size (default: 640x480)")
    p.add_argument("--threads", type=int, default=2, help="threads")
    p.add_argument("--out", help="where")
    text = " ".join(p.format_help().split())
    assert "frame size (default: 640x480)" in text and "(default: (640" not in text
    assert "threads (default: 2)" in text and "where (default" not in text
