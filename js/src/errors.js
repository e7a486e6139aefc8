// What each media and connection error means and what the user can do about it,
// as Twilio's "Developing High Quality Video Applications" guide says (seed 004).

const MEDIA = {
  NotAllowedError: [
    'Permission to use the camera or microphone was denied or dismissed.',
    'Allow this page to use the camera and microphone in the browser settings, then run the cell again.',
  ],
  NotFoundError: [
    'No camera or microphone was found, or the browser is not allowed to use it by the system settings.',
    'Connect a camera or microphone and enable it for the browser in the system settings.',
  ],
  NotReadableError: [
    'The browser could not start the camera or microphone; another app or tab probably holds it.',
    'Close other apps and tabs that use the camera or microphone and run the cell again (worst case, restart the browser).',
  ],
  OverconstrainedError: [
    'The chosen camera or microphone cannot satisfy the request; it may have been disconnected.',
    'Choose another device, or the default one.',
  ],
  TypeError: [
    'Camera and microphone need a secure context, and this page is neither https nor localhost.',
    'Open JupyterLab over https, or on localhost / 127.0.0.1.',
  ],
};

const CODES = {
  20101: ['The Access Token is invalid.', 'Reload the page so that the widget fetches a new token.'],
  20104: ['The Access Token has expired.', 'Run the cell again to fetch a new token.'],
  53000: ['The signaling connection to the server could not be established.', 'Check that the Jupyter server is running and reachable from this browser.'],
  53001: ['The signaling connection was lost and could not be re-established.', 'Check the network connection, then run the cell again.'],
  53002: ['The signaling connection timed out, or the session expired.', 'Run the cell again to rejoin.'],
  53006: ['The signaling server is too busy to accept new clients.', 'Try joining again after some time.'],
  53105: ['The room is full.', 'Try another room, or raise VideoApp.max_participants.'],
  53106: ['The room does not exist and ad-hoc rooms are disabled.', 'Create the room over REST first (POST /video/v1/Rooms).'],
  53117: ['Tracks cannot be unsubscribed in a Go or Peer-to-Peer room: every participant receives every track.', 'Create the room as a group room (RoomWidget(type="group")) to choose what each participant receives.'],
  53118: ['The room has ended.', 'Join a new room (the same name starts a new one when ad-hoc rooms are on).'],
  53205: ['Another participant joined the room with the same identity.', 'Use a unique identity (the widget makes one unique when it asks for a token).'],
  53405: ['The media connection to the server failed.', 'Check that the server\'s ICE addresses (VideoApp.ice_host_addresses) are reachable from this browser, and that no firewall blocks UDP.'],
};

/**
 * {code, name, message, remedy} for a media error (DOMException name), a Twilio
 * error (numeric code) or anything else thrown.
 */
export function describeError(error) {
  const name = (error && error.name) || 'Error';
  const code = error && typeof error.code === 'number' && error.code >= 1000 ? error.code : null;
  let meaning = null;
  if (code && CODES[code]) { meaning = CODES[code]; } else if (!code && MEDIA[name]) { meaning = MEDIA[name]; }
  const detail = (error && error.message) || String(error);
  return {
    code,
    name,
    message: meaning ? `${meaning[0]} (${detail})` : detail,
    remedy: meaning ? meaning[1] : '',
  };
}

/** Whether an error is one of getUserMedia's (seed 004's list of media errors). */
export function isMediaError(error) {
  return !!error && !error.code && Object.prototype.hasOwnProperty.call(MEDIA, error.name);
}
