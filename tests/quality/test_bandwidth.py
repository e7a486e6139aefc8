"""The Bandwidth Profile allocation: render sizes, priorities, caps and modes decide
each subscription's layer or switch-off (sfu/bandwidth.py), and bad profiles are
refused naming the field."""

from __future__ import annotations

import pytest

from jupyter_video.sfu.bandwidth import BandwidthProfile, DownlinkEstimate, VideoDemand, allocate
from jupyter_video.sfu.network_quality import level

SIZES = [(320, 180), (640, 360), (1280, 720)]
RATES = [150_000, 500_000, 1_500_000]


def demand(sid: str, **kwargs: object) -> VideoDemand:
    return VideoDemand(track_sid=sid, layer_sizes=SIZES, layer_bitrates=RATES, **kwargs)  # type: ignore[arg-type]


def test_the_render_size_picks_the_smallest_layer_with_as_many_pixels() -> None:
    profile = BandwidthProfile()
    got = allocate([demand("a", render_size=(160, 90)), demand("b", render_size=(600, 340)),
                    demand("c", render_size=(1920, 1080)), demand("d")], profile, None)
    assert got == {"a": 0, "b": 1, "c": 2, "d": 2}


def test_a_track_not_rendered_is_switched_off() -> None:
    assert allocate([demand("a", rendered=False)], BandwidthProfile(), None) == {"a": None}


def test_under_a_cap_low_priority_goes_down_then_off_first() -> None:
    profile = BandwidthProfile(max_subscription_bitrate=700_000)
    got = allocate([demand("low", priority="low"), demand("high", priority="high")],
                   profile, None)
    assert got == {"high": 1, "low": 0}  # 500k + 150k fit, not 1.5M
    got = allocate([demand("low", priority="low"), demand("high", priority="high")],
                   BandwidthProfile(max_subscription_bitrate=200_000), None)
    assert got == {"high": 0, "low": None}


def test_switch_off_disabled_keeps_every_track_on_at_its_lowest_layer() -> None:
    profile = BandwidthProfile(max_subscription_bitrate=100_000, track_switch_off="disabled")
    assert allocate([demand("a"), demand("b")], profile, None) == {"a": 0, "b": 0}


def test_presentation_keeps_all_but_high_priority_at_the_lowest_layer() -> None:
    profile = BandwidthProfile(mode="presentation")
    got = allocate([demand("screen", priority="high"), demand("cam")], profile, None)
    assert got == {"screen": 2, "cam": 0}


def test_the_dominant_speaker_gets_the_profiles_speaker_priority() -> None:
    profile = BandwidthProfile(max_subscription_bitrate=200_000, active_speaker_priority="high")
    got = allocate([demand("quiet"), demand("speaker", dominant_speaker=True)], profile, None)
    assert got == {"speaker": 0, "quiet": None}


def test_the_downlink_estimate_caps_like_max_subscription_bitrate() -> None:
    estimate = DownlinkEstimate()
    assert estimate.update(0.0, 2_000_000) is None  # no loss: no limit known
    capped = estimate.update(0.3, 1_000_000)
    assert capped == 850_000
    got = allocate([demand("a")], BandwidthProfile(), capped)
    assert got == {"a": 1}


def test_a_remb_under_what_was_sent_caps_the_estimate_and_one_above_it_does_not() -> None:
    estimate = DownlinkEstimate()
    for _ in range(5):  # the receiver's estimate is not initialised for 5 s: no limit
        assert estimate.update(0.0, 1_500_000, remb_bps=60_000) is None
    # libwebrtc caps its REMB at 1.5x what it receives: no limit in it.
    assert estimate.update(0.0, 500_000, remb_bps=760_000) is None
    # Its delay-based estimate fell under the rate sent: the link is overused (once
    # is a start-up burst, twice in a row the link).
    assert estimate.update(0.0, 1_500_000, remb_bps=255_000) is None
    assert estimate.update(0.0, 1_500_000, remb_bps=255_000) == 255_000
    assert allocate([demand("a")], BandwidthProfile(), 255_000) == {"a": 0}
    # The loss-based estimate, if lower, wins (the lower of the two); it is GCC's
    # A(t-1) (1 - p/2), from the estimate.
    assert estimate.update(0.4, 500_000, remb_bps=400_000) == 204_000
    # The next interval's loss is of what was sent before that decrease: kept.
    assert estimate.update(0.5, 400_000, remb_bps=380_000) == 204_000
    # On the low layer the REMB (1.5x of it) is no limit: the estimate climbs again.
    climbed = estimate.update(0.0, 150_000, remb_bps=235_000)
    assert climbed == 220_320
    assert (estimate.set_by_loss, estimate.set_by_remb) == (1, 1)


def test_a_remb_still_ramping_up_is_no_limit() -> None:
    """Chrome's REMB to a new subscriber rises under what it receives for its first
    seconds (66 -> 104 kbit/s while 130 kbit/s arrived): no overuse until it falls."""
    estimate = DownlinkEstimate()
    for remb in (66_000, 70_000, 75_000, 81_000, 89_000, 97_000, 104_000, 104_000, 112_000):
        assert estimate.update(0.0, 133_000, remb_bps=remb) is None
    # Then the link is overused: the receiver's estimate falls (0.85x what arrives).
    assert estimate.update(0.0, 133_000, remb_bps=95_000) is None  # once: a burst
    assert estimate.update(0.0, 133_000, remb_bps=96_000) == 96_000  # still under
    assert estimate.set_by_remb == 1


def test_loss_makes_one_decrease_per_round_trip() -> None:
    """A queue's backlog is lost after the decrease it caused (a tbf queue of 1.5 s:
    Receiver Reports count it for two more intervals); cutting again for it put the
    estimate under the lowest layer."""
    estimate = DownlinkEstimate()
    assert estimate.update(0.4, 400_000, rtt_ms=1500) == 320_000
    assert estimate.update(0.6, 100_000, rtt_ms=1500) == 320_000
    assert estimate.update(0.6, 100_000, rtt_ms=1500) == 320_000
    assert estimate.update(0.6, 100_000, rtt_ms=1500) == 320_000
    assert estimate.update(0.5, 100_000, rtt_ms=100) == 240_000  # still lost: a cap
    assert estimate.set_by_loss == 2


def test_network_quality_stats_carry_the_downlink_estimate() -> None:
    from jupyter_video.sfu.network_quality import Direction

    fits = Direction(bitrate=200_000, available=255_000, measured=True).stats()
    assert fits["bandwidth"] == {"actual": 200_000, "available": 255_000, "level": 5}
    over = Direction(bitrate=1_000_000, available=300_000, measured=True)
    assert over.bandwidth_level() == 1  # 70 % of what is sent does not fit
    assert Direction(bitrate=1, measured=True).stats()["bandwidth"] == {
        "actual": 1, "available": None, "level": None}


@pytest.mark.parametrize(("video", "field"), [
    ({"mode": "tiles"}, "mode"),
    ({"track_switch_off": "sometimes"}, "track_switch_off"),
    ({"active_speaker_priority": "top"}, "active_speaker_priority"),
    ({"max_subscription_bandwidth": -1}, "max_subscription_bandwidth"),
])
def test_a_bad_profile_is_refused_naming_the_field(video: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BandwidthProfile.from_rsp({"video": video})


def test_the_profile_reads_what_twilio_video_sends() -> None:
    profile = BandwidthProfile.from_rsp({"video": {
        "mode": "collaboration", "max_subscription_bandwidth": 2_400_000,
        "track_switch_off": "detected", "active_speaker_priority": "high",
        "render_dimensions": {"low": {"width": 160, "height": 90}}}})
    assert profile == BandwidthProfile("collaboration", 2_400_000, "detected", "high",
                                       {"low": (160, 90)})


def test_levels_fall_with_loss_rtt_and_jitter() -> None:
    assert level(0.0, 20, 5) == 5
    assert level(0.04) == 3
    assert level(0.25) == 0
    assert level(0.0, rtt_ms=900) == 1
    assert level(0.0, jitter_ms=50) == 3
