// Quality APIs of twilio-video.js for tests/quality: added after twilio_app.js, whose
// rooms it learns by wrapping Twilio.Video.connect (twilio_app.js calls it by name).
/* global Twilio */
(function () {
  'use strict';
  const Video = Twilio.Video;
  // Every tile a fixed 640x360 in the viewport, as an app's CSS sizes its tiles:
  // twilio-video's automatic render hints report the element's size, and a <video>
  // sized by what it shows asks for the layer it already gets (320x180 once the low
  // layer decoded first, for ever); and it switches off a tile outside the viewport
  // (its IntersectionObserver), where 640x360 tiles in a column would fall.
  const style = document.createElement('style');
  style.textContent = 'video { position: fixed; top: 0; left: 0; width: 640px; height: 360px; }';
  document.head.append(style);
  const rooms = {};
  const quality = {};
  let connectingKey = null;
  const pcs = {};
  const ridPublisher = {};
  const createOffer = RTCPeerConnection.prototype.createOffer;
  RTCPeerConnection.prototype.createOffer = function (...args) {
    if (connectingKey && !this._qualityKey) {
      this._qualityKey = connectingKey;
      (pcs[connectingKey] = pcs[connectingKey] || []).push(this);
    }
    return createOffer.apply(this, args);
  };
  const connect = Video.connect;
  Video.connect = function (...args) {
    const key = connectingKey;
    return connect.apply(this, args).then((room) => {
      rooms[key] = room;
      const entry = quality[key] = { switches: [] };
      const note = (event) => (track, publication, participant) => entry.switches.push(
        { event, identity: participant.identity, kind: track.kind, at: performance.now() });
      room.on('trackSwitchedOff', note('switchedOff'));
      room.on('trackSwitchedOn', note('switchedOn'));
      return room;
    });
  };
  const appConnect = window.app.connect;
  window.app.connect = async function (spec) {
    connectingKey = spec.key;
    try { return await appConnect.call(this, spec); } finally { connectingKey = null; }
  };

  function remoteVideo(key, identity) {
    const participant = [...rooms[key].participants.values()].find((p) => p.identity === identity);
    const publication = participant && [...participant.videoTracks.values()][0];
    return publication ? publication : null;
  }

  Object.assign(window.app, {
    /** Publish a camera of width x height (VP8 simulcast when the room asked for it). */
    async publishCameraOf(key, width, height, priority) {
      const track = await Video.createLocalVideoTrack({ width, height, frameRate: 24, name: 'hd-camera' });
      const publication = await rooms[key].localParticipant.publishTrack(track, { priority: priority || 'standard' });
      return publication.trackSid;
    },
    /** A plain RTCPeerConnection publishing a camera with RID simulcast, as Chrome
     * offers it unmunged (a=simulcast:send q;h;f, a=rid, no a=ssrc): its offer, once
     * every candidate is in it (the test does the RSP signaling). */
    async ridOffer(width, height) {
      const stream = await navigator.mediaDevices.getUserMedia(
        { video: { width, height, frameRate: 24 }, audio: false });
      const [track] = stream.getVideoTracks();
      const pc = ridPublisher.pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
      pc.addTransceiver(track, { direction: 'sendonly', streams: [stream], sendEncodings: [
        { rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }] });
      await pc.setLocalDescription(await pc.createOffer());
      if (pc.iceGatheringState !== 'complete') {
        await new Promise((resolve) => pc.addEventListener('icegatheringstatechange',
          () => pc.iceGatheringState === 'complete' && resolve()));
      }
      return { sdp: pc.localDescription.sdp, trackId: track.id };
    },
    async ridAnswer(sdp) { await ridPublisher.pc.setRemoteDescription({ type: 'answer', sdp }); return true; },
    async ridAnswerOffer(sdp) {
      const pc = ridPublisher.pc;
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      return pc.localDescription.sdp;
    },
    /** The RID publisher's encodings (outbound-rtp per rid): size, frames, bytes. */
    async ridEncodings() {
      const out = {};
      (await ridPublisher.pc.getStats()).forEach((r) => {
        if (r.type === 'outbound-rtp' && r.kind === 'video') {
          out[r.rid] = { width: r.frameWidth || 0, framesEncoded: r.framesEncoded || 0, bytesSent: r.bytesSent };
        }
      });
      return out;
    },
    switches(key) { return quality[key].switches; },
    /** Whether identity's video is subscribed here, and switched off. */
    remoteVideo(key, identity) {
      const publication = remoteVideo(key, identity);
      if (!publication || !publication.track) { return null; }
      return { sid: publication.trackSid, switchedOff: publication.track.isSwitchedOff,
               priority: publication.publishPriority };
    },
    setRenderDimensions(key, identity, width, height) {
      remoteVideo(key, identity).track.setContentPreferences({ renderDimensions: { width, height } });
      return true;
    },
    switchOff(key, identity) { remoteVideo(key, identity).track.switchOff(); return true; },
    switchOn(key, identity) { remoteVideo(key, identity).track.switchOn(); return true; },
    setSubscribePriority(key, identity, priority) { remoteVideo(key, identity).track.setPriority(priority); return true; },
    networkQuality(key) {
      const room = rooms[key];
      const local = room.localParticipant;
      return {
        local: local.networkQualityLevel,
        localLevels: local.networkQualityStats ? { audio: local.networkQualityStats.audio, video: local.networkQualityStats.video } : null,
        remotes: [...room.participants.values()].map((p) => ({ identity: p.identity, level: p.networkQualityLevel })),
      };
    },
    /** Encodings the browser sends: per outbound video stream its rid/ssrc, active flag, size and bytes. */
    async encodings(key) {
      const out = [];
      for (const pc of pcs[key] || []) {
        const stats = await pc.getStats();
        stats.forEach((r) => {
          if (r.type === 'outbound-rtp' && r.kind === 'video') {
            out.push({ ssrc: r.ssrc, rid: r.rid || null, active: r.active, width: r.frameWidth || 0,
                       bytesSent: r.bytesSent, framesEncoded: r.framesEncoded || 0 });
          }
        });
      }
      return out.sort((a, b) => a.ssrc - b.ssrc);
    },
  });
}());
