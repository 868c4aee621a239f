"""Offers checked before aiortc sees them.

Past ``setRemoteDescription`` aiortc starts connecting in a task of its own; an offer
rejected after that leaves the task to fail where nobody sees it but the log (a traceback
at ERROR level). So /offer, /whip and /whep check an offer's shape first, with aiortc's
own parser, and answer 400 saying what is wrong.
"""

from __future__ import annotations

from aiortc import sdp as aiortc_sdp


def offer_problem(sdp: str, video: tuple[str, ...], want: str) -> str | None:
    """Why aiortc could not use this offer, or None. ``video``: the directions a usable
    video section may have (sendonly/sendrecv for a camera, recvonly/sendrecv for a
    viewer); ``want`` says so in words."""
    try:
        parsed = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as e:  # aiortc's parser raises whatever the bad line trips
        return f"it is not a session description aiortc can parse ({why_refused(e)})"
    mids = [m.rtp.muxId for m in parsed.media]
    if not parsed.media or any(not mid for mid in mids) or len(set(mids)) != len(mids):
        return "each m= section needs its own a=mid line"
    if any(item not in mids for group in parsed.group for item in group.items):
        return "its BUNDLE group names a mid that no m= section has"
    if any(not (m.ice and m.ice.usernameFragment and m.ice.password and m.dtls and m.dtls.fingerprints) for m in parsed.media):
        return "each m= section needs ICE credentials and a DTLS fingerprint"
    if not any(m.kind == "video" and (m.direction or "sendrecv") in video for m in parsed.media):
        return want
    return None


def why_refused(error: Exception) -> str:
    """What was wrong with an offer aiortc refused, in words: its own message when it has one."""
    text = str(error).strip()
    if not text or "StopIteration" in text or isinstance(error, (AttributeError, KeyError, IndexError, TypeError)):
        return "its session description is incomplete or inconsistent (each m= section needs a mid, ICE credentials and a fingerprint)"
    return text
