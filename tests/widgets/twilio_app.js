// A page's worth of twilio-video.js participants, written the way Twilio's own examples
// use the SDK; added after twilio-video.min.js by tests/widgets/test_twilio_compat_browser.py.
// One page may hold several rooms (participants), each under a key of the caller's.
/* global Twilio */
(function () {
  'use strict';
  const Video = Twilio.Video;
  const joined = {};

  // twilio-video keeps its RTCPeerConnections to itself: note each one with the room
  // being connected when it makes its first offer (rooms here connect one at a time;
  // patching the prototype, as tests/browser/page.js does, keeps twilio-video's wrapper,
  // which may set that offer only once the answer is in: peerconnection.js).
  let connecting = null;
  const known = new WeakSet();
  const createOffer = RTCPeerConnection.prototype.createOffer;
  RTCPeerConnection.prototype.createOffer = function (...args) {
    if (connecting && !known.has(this)) { known.add(this); connecting.peerConnections.push(this); }
    return createOffer.apply(this, args);
  };

  function tone() {
    // An oscillator behind a gain: loud(true) speaks at 440 Hz, loud(false) is silence.
    const context = new AudioContext();
    const oscillator = context.createOscillator();
    oscillator.frequency.value = 440;
    const gain = context.createGain();
    gain.gain.value = 0;
    const destination = context.createMediaStreamDestination();
    oscillator.connect(gain);
    gain.connect(destination);
    oscillator.start();
    context.resume();
    return { track: destination.stream.getAudioTracks()[0], gain };
  }

  function watch(entry, participant) {
    participant.on('trackSubscribed', (track) => {
      entry.events.push({ event: 'trackSubscribed', identity: participant.identity, kind: track.kind, name: track.name });
      if (track.kind === 'data') {
        track.on('message', (data) => entry.messages.push({ identity: participant.identity, data }));
      } else if (track.kind === 'video') {
        const video = track.attach();
        video.dataset.key = entry.key;
        video.dataset.identity = participant.identity;
        document.body.append(video);
      }
    });
    participant.on('trackUnsubscribed', (track) => entry.events.push({ event: 'trackUnsubscribed', identity: participant.identity, kind: track.kind }));
  }

  window.app = {
    /** connect(token, {name, ...options}) with tracks made from {tone, camera, data}. */
    async connect({ key, token, wsServer, name, options, tone: withTone, microphone, camera, data }) {
      const entry = { key, events: [], messages: [], peerConnections: [], speakers: [] };
      const tracks = [];
      if (withTone) {
        const { track, gain } = tone();
        entry.gain = gain;
        tracks.push(new Video.LocalAudioTrack(track, { name: 'tone' }));
      }
      if (microphone) { tracks.push(await Video.createLocalAudioTrack({ name: 'microphone' })); }
      if (camera) { tracks.push(await Video.createLocalVideoTrack({ width: 320, height: 240, name: 'camera' })); }
      if (data) {
        entry.dataTrack = new Video.LocalDataTrack({ name: 'chat' });
        tracks.push(entry.dataTrack);
      }
      connecting = entry;
      let room;
      try {
        room = await Video.connect(token, Object.assign({ name, wsServer, iceServers: [], insights: false, tracks }, options || {}));
      } catch (error) {
        return { error: { code: error.code || null, message: error.message } };
      } finally {
        connecting = null;
      }
      entry.room = room;
      joined[key] = entry;
      room.participants.forEach((p) => watch(entry, p));
      room.on('participantConnected', (p) => watch(entry, p));
      room.on('dominantSpeakerChanged', (p) => entry.speakers.push({ identity: p ? p.identity : null, at: performance.now() }));
      room.on('disconnected', (r, error) => entry.events.push({ event: 'disconnected', code: error ? error.code : null }));
      room.localParticipant.on('trackPublicationFailed', (error, track) => entry.events.push({ event: 'trackPublicationFailed', kind: track.kind, code: error.code }));
      return {
        sid: room.sid, name: room.name, state: room.state, mediaRegion: room.mediaRegion,
        signalingRegion: room.localParticipant.signalingRegion, isRecording: room.isRecording,
        identity: room.localParticipant.identity,
      };
    },

    state(key) {
      const entry = joined[key];
      return {
        events: entry.events, messages: entry.messages, speakers: entry.speakers,
        dominantSpeaker: entry.room.dominantSpeaker ? entry.room.dominantSpeaker.identity : null,
        participants: [...entry.room.participants.values()].map((p) => p.identity),
        published: [...entry.room.localParticipant.tracks.values()].map((p) => p.kind),
      };
    },

    loud(key, on) {
      joined[key].gain.gain.value = on ? 0.5 : 0;
      return performance.now();
    },

    /** Enable or disable (mute) the room's local tracks of ``kind``. */
    enable(key, kind, on) {
      joined[key].room.localParticipant.tracks.forEach((publication) => {
        if (publication.kind === kind) { publication.track.enable(on); }
      });
      return performance.now();
    },

    /** Send ``texts`` on the room's data track the moment it is published. */
    whenPublishedSend(key, texts) {
      const entry = joined[key];
      const send = () => texts.forEach((text) => entry.dataTrack.send(text));
      const local = entry.room.localParticipant;
      if ([...local.dataTracks.values()].some((p) => p.track === entry.dataTrack)) { send(); return 'sent'; }
      local.on('trackPublished', (publication) => { if (publication.track === entry.dataTrack) { send(); } });
      return 'waiting';
    },

    /** Publish a new data track and send ``texts`` on it as soon as publishTrack resolves. */
    async publishDataAndSend(key, name, texts) {
      const entry = joined[key];
      const track = new Video.LocalDataTrack({ name });
      await entry.room.localParticipant.publishTrack(track);
      texts.forEach((text) => track.send(text));
      return name;
    },

    /** Publish the camera after joining: {kind} or {error: {code, message}}. */
    async publishCamera(key) {
      const track = await Video.createLocalVideoTrack({ width: 320, height: 240, name: 'late-camera' });
      try {
        const publication = await joined[key].room.localParticipant.publishTrack(track);
        return { kind: publication.kind };
      } catch (error) {
        track.stop();
        return { error: { code: error.code || null, message: error.message } };
      }
    },

    /** The room's outbound RTP streams: kind, codec, bytes sent and frames encoded. */
    async outbound(key) {
      const streams = [];
      for (const pc of joined[key].peerConnections) {
        const stats = await pc.getStats();
        stats.forEach((report) => {
          if (report.type !== 'outbound-rtp') { return; }
          const codec = report.codecId && stats.get(report.codecId);
          streams.push({ kind: report.kind, codec: codec ? codec.mimeType : null, bytesSent: report.bytesSent,
                         framesEncoded: report.framesEncoded || 0 });
        });
      }
      return streams;
    },

    /** The room's inbound video streams: codec, frames received, decoded and dropped. */
    async inbound(key) {
      const streams = [];
      for (const pc of joined[key].peerConnections) {
        const stats = await pc.getStats();
        stats.forEach((report) => {
          if (report.type !== 'inbound-rtp' || report.kind !== 'video') { return; }
          const codec = report.codecId && stats.get(report.codecId);
          streams.push({ codec: codec ? codec.mimeType : null, framesReceived: report.framesReceived || 0,
                         framesDecoded: report.framesDecoded || 0, framesDropped: report.framesDropped || 0,
                         width: report.frameWidth || 0, height: report.frameHeight || 0 });
        });
      }
      return streams;
    },

    /** The server's description (answer or offer) the room's first peer connection holds. */
    remoteSdp(key) {
      const [pc] = joined[key].peerConnections;
      return pc && pc.remoteDescription ? pc.remoteDescription.sdp : null;
    },

    descriptions(key) {
      return joined[key].peerConnections.map((pc) => ({
        local: pc.localDescription && pc.localDescription.sdp,
        remote: pc.remoteDescription && pc.remoteDescription.sdp,
      }));
    },

    /** Mean brightness and a hash of the latest frame of ``identity``'s video in room ``key``. */
    sample({ key, identity }) {
      const video = document.querySelector(`video[data-key="${key}"][data-identity="${identity}"]`);
      if (!video || video.readyState < 2 || !video.videoWidth) { return null; }
      const canvas = document.createElement('canvas');
      canvas.width = 32; canvas.height = 24;
      const context = canvas.getContext('2d');
      context.drawImage(video, 0, 0, 32, 24);
      const pixels = context.getImageData(0, 0, 32, 24).data;
      let sum = 0;
      for (let i = 0; i < pixels.length; i += 4) { sum += pixels[i] + pixels[i + 1] + pixels[i + 2]; }
      return { mean: sum / (pixels.length / 4 * 3), width: video.videoWidth, height: video.videoHeight };
    },

    disconnect(key) {
      if (joined[key]) { joined[key].room.disconnect(); delete joined[key]; }
      return null;
    },
  };
}());
