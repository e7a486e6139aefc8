"""Twilio's error codes, as exceptions that carry them.

The same code reaches a REST caller (``{code, message, more_info, status}``),
a signaling peer (RSP ``error {code, message}``) and a Python caller (the
exception's ``code``). The default messages are twilio-video.js's
(``lib/util/twilio-video-errors.js``) and the REST API's.
"""

from __future__ import annotations

from typing import Any

# code -> (HTTP status, default message)
CODES: dict[int, tuple[int, str]] = {
    # REST and authentication
    20001: (400, "Invalid parameter"),
    20003: (401, "Authentication failed: send HTTP Basic credentials (API key or account SID)"),
    20403: (403, "Forbidden: this user lacks the permission the request needs"),
    20404: (404, "The requested resource was not found"),
    20405: (405, "Method not allowed"),
    # Access Tokens
    20101: (401, "Invalid Access Token"),
    20102: (401, "Invalid Access Token header"),
    20103: (401, "Invalid Access Token issuer/subject"),
    20104: (401, "Access Token expired or expiration date invalid"),
    20105: (401, "Access Token not yet valid"),
    20106: (401, "Invalid Access Token grants"),
    20107: (401, "Invalid Access Token signature"),
    # Signaling
    53000: (400, "Failed to establish signaling connection"),
    53001: (400, "Signaling connection disconnected"),
    53002: (408, "Signaling connection timed out"),
    53003: (400, "Client received an invalid signaling message"),
    53004: (400, "Client sent an invalid signaling message"),
    53006: (503, "Video server is busy"),
    # Rooms
    53100: (400, "Room name is invalid"),
    53101: (400, "Room name is too long"),
    53102: (400, "Room name contains invalid characters"),
    53103: (500, "Unable to create Room"),
    53104: (400, "Unable to connect to Room"),
    53105: (400, "Room contains too many Participants"),
    53106: (404, "Room not found"),
    53107: (400, "MaxParticipants is out of range"),
    53108: (400, "Room type is not valid"),
    53109: (400, "Timeout is out of range"),
    53110: (400, "Room status callback method is invalid"),
    53111: (400, "Room status callback URL is invalid"),
    53112: (400, "Room status is invalid"),
    53113: (400, "Room exists"),
    53114: (400, "Room creation parameter(s) incompatible with the Room type"),
    53117: (400, "Subscription operation requested is not supported for the Room type"),
    53118: (400, "Room completed"),
    53120: (400, "Invalid Recording Rule(s)"),
    53124: (400, "The AudioOnly flag is not supported for the Room type"),
    53125: (400, "The track kind is not supported by the Room"),
    # Participants
    53200: (400, "Participant identity is invalid"),
    53201: (400, "Participant identity is too long"),
    53202: (400, "Participant identity contains invalid characters"),
    53203: (
        400,
        "The maximum number of published tracks allowed in the Room at the same time "
        "has been reached",
    ),
    53204: (404, "Participant not found"),
    53205: (400, "Participant disconnected because of duplicate identity"),
    53215: (400, "Invalid subscribe rules"),
    53216: (400, "Participant session length exceeded"),
    # Tracks
    53300: (400, "Track is invalid"),
    53301: (400, "Track name is invalid"),
    53302: (400, "Track name is too long"),
    53303: (400, "Track name contains invalid characters"),
    53304: (400, "Track name is duplicated"),
    53305: (400, "The server has reached capacity and cannot fulfill this request"),
    # Media
    53400: (400, "Client is unable to create or apply a local media description"),
    53401: (400, "Server is unable to create or apply a local media description"),
    53402: (400, "Client is unable to apply a remote media description"),
    53403: (400, "Server is unable to apply a remote media description"),
    53404: (400, "No supported codec"),
    53405: (400, "Media connection failed or Media activity ceased"),
    53407: (400, "Media connection failed due to DTLS handshake failure"),
}


class VideoError(Exception):
    """An error with Twilio's code, HTTP status and a message that says what to fix."""

    def __init__(self, code: int, message: str | None = None, *, status: int | None = None):
        default_status, default_message = CODES.get(code, (400, "Error"))
        self.code = code
        self.status = status if status is not None else default_status
        self.message = message or default_message
        super().__init__(f"{self.code}: {self.message}")

    @property
    def more_info(self) -> str:
        return f"https://www.twilio.com/docs/errors/{self.code}"

    def to_dict(self) -> dict[str, Any]:
        """Twilio's REST error body."""
        return {
            "code": self.code,
            "message": self.message,
            "more_info": self.more_info,
            "status": self.status,
        }

    @classmethod
    def from_code(cls, code: int, message: str | None = None) -> VideoError:
        """The most specific exception class for ``code``."""
        for family in (
            AccessTokenError,
            SignalingError,
            RoomError,
            ParticipantError,
            TrackError,
            MediaError,
        ):
            if family.owns(code):
                return family(code, message)
        return VideoError(code, message)


class _CodeFamily(VideoError):
    low = 0
    high = 0

    @classmethod
    def owns(cls, code: int) -> bool:
        return cls.low <= code <= cls.high


class AccessTokenError(_CodeFamily):
    """20101-20107: the Access Token is malformed, expired or wrongly signed."""

    low, high = 20101, 20199


class SignalingError(_CodeFamily):
    """53000-53099: the signaling connection failed or carried a bad message."""

    low, high = 53000, 53099


class RoomError(_CodeFamily):
    """53100-53199: a Room could not be created, found or joined."""

    low, high = 53100, 53199


class ParticipantError(_CodeFamily):
    """53200-53299: a Participant is invalid, missing or was displaced."""

    low, high = 53200, 53299


class TrackError(_CodeFamily):
    """53300-53399: a Track is invalid or cannot be published."""

    low, high = 53300, 53399


class MediaError(_CodeFamily):
    """53400-53499: SDP negotiation or the media connection failed."""

    low, high = 53400, 53499


def not_found(what: str) -> VideoError:
    """Twilio's 20404 for a resource that does not exist."""
    return VideoError(20404, f"The requested resource {what} was not found")


def invalid_parameter(message: str, code: int = 20001) -> VideoError:
    """A 400 for a REST parameter, with the code Twilio uses for it."""
    return VideoError(code, message, status=400)
