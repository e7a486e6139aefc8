"""SDP facts the client reads: msid track ids per mid, the ICE ufrag, m=application."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_video.client.peer_connection import (
    has_application_section,
    ice_ufrag,
    track_ids_by_mid,
)

FIXTURES = Path(__file__).resolve().parent.parent / "signaling" / "fixtures"


def captured_descriptions(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(direction, description) for every description in a capture."""
    frames = json.loads((FIXTURES / name).read_text())["frames"]
    found = []
    for record in frames:
        body = record["frame"].get("body") or {}
        for pc in body.get("peer_connections") or []:
            if pc.get("description", {}).get("sdp"):
                found.append((record["dir"], pc["description"]))
    return found


def test_chrome_offer_maps_mids_to_the_announced_track_ids() -> None:
    hello = json.loads((FIXTURES / "capture_join.json").read_text())["frames"][1]["frame"]
    body = hello["body"]
    sdp = body["peer_connections"][0]["description"]["sdp"]
    announced = {t["id"] for t in body["participant"]["tracks"] if t["kind"] != "data"}
    assert set(track_ids_by_mid(sdp).values()) == announced
    assert has_application_section(sdp)


def test_server_offer_maps_mids_to_the_subscribed_ids() -> None:
    frames = json.loads((FIXTURES / "capture_join.json").read_text())["frames"]
    for record in frames:
        body = record["frame"].get("body") or {}
        subscribed = body.get("subscribed", {}).get("tracks")
        offers = [pc["description"] for pc in body.get("peer_connections", [])
                  if pc.get("description", {}).get("type") == "offer"]
        if record["dir"] == "out" and subscribed and offers:
            ids = set(track_ids_by_mid(offers[0]["sdp"]).values())
            media_ids = {t["id"] for t in subscribed} - {subscribed[2]["id"]}  # [2] is data
            assert media_ids <= ids
            return
    raise AssertionError("the capture has no server offer with subscriptions")


def test_sections_without_msid_or_of_kind_application_are_left_out() -> None:
    sdp = "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=ice-ufrag:abcd", "a=recvonly",
        "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1", "a=msid:stream track-v",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=mid:2",
        "a=msid:stream not-a-track", ""])
    assert track_ids_by_mid(sdp) == {"1": "track-v"}
    assert ice_ufrag(sdp) == "abcd"
    assert has_application_section(sdp)
    assert not has_application_section(sdp.split("m=application")[0])
    assert not has_application_section(None)


def test_every_captured_description_parses() -> None:
    for direction, description in captured_descriptions("capture_join.json"):
        ids = track_ids_by_mid(description["sdp"])
        assert all(ids.values()), (direction, description["type"])
        assert ice_ufrag(description["sdp"])
