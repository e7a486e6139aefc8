// Runs inside Chromium. Calls twilio-video's connect() with a custom wsServer and
// reports every Room / Participant / Track event to the driver (harness.mjs).
/* global Twilio */
(function () {
  'use strict';
  const Video = Twilio.Video;
  const send = (event, data) => window.report(Object.assign({ event }, data || {}));

  const errorInfo = (error) => error ? { code: error.code || null, message: error.message, name: error.name } : null;
  const participantInfo = (p) => ({ sid: p.sid, identity: p.identity, state: p.state });
  const publicationInfo = (pub) => ({ trackSid: pub.trackSid, trackName: pub.trackName, kind: pub.kind, isTrackEnabled: pub.isTrackEnabled });

  function watchParticipant(room, participant) {
    participant.on('trackPublished', (pub) => send('trackPublished', { participant: participant.sid, publication: publicationInfo(pub) }));
    participant.on('trackUnpublished', (pub) => send('trackUnpublished', { participant: participant.sid, publication: publicationInfo(pub) }));
    participant.on('trackSubscribed', (track, pub) => {
      send('trackSubscribed', { participant: participant.sid, publication: publicationInfo(pub), trackName: track.name, kind: track.kind });
      if (track.kind === 'audio') {
        // Played, so that the browser decodes it and counts its energy (stats()).
        document.body.append(track.attach());
      }
      if (track.kind === 'data') {
        track.on('message', (data) => send('dataMessage', { participant: participant.sid, trackSid: pub.trackSid, data: typeof data === 'string' ? data : '<binary>' }));
      }
    });
    participant.on('trackUnsubscribed', (track, pub) => send('trackUnsubscribed', { participant: participant.sid, publication: publicationInfo(pub) }));
    participant.on('trackSubscriptionFailed', (error, pub) => send('trackSubscriptionFailed', { participant: participant.sid, publication: publicationInfo(pub), error: errorInfo(error) }));
  }

  const state = { room: null, dataTrack: null };

  // twilio-video keeps its RTCPeerConnection to itself: note each one as it is
  // given a remote description (a subclass would hide the methods from its wrapper).
  const peerConnections = [];
  const setRemoteDescription = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (...args) {
    if (!peerConnections.includes(this)) { peerConnections.push(this); }
    return setRemoteDescription.apply(this, args);
  };

  // With logLevel "debug", report every failing SDP call with the browser's own
  // message: twilio-video only says "Client is unable to create or apply a local
  // media description" (53400) and hides the cause.
  function traceSdpErrors() {
    const proto = RTCPeerConnection.prototype;
    ['setRemoteDescription', 'setLocalDescription', 'createAnswer', 'createOffer'].forEach((name) => {
      const original = proto[name];
      proto[name] = function (...args) {
        return original.apply(this, args).catch((error) => {
          send('sdpError', { method: name, message: error.message, sdp: args[0] && args[0].sdp });
          throw error;
        });
      };
    });
  }

  window.harness = {
    /**
     * options: {token, wsServer, name, audio, video, data, logLevel}
     */
    async connect(options) {
      if (options.logLevel) {
        // twilio-video 2.x: the per-connect "logLevel" option is deprecated; use the Logger.
        Video.Logger.getLogger('twilio-video').setLevel(options.logLevel);
        if (options.logLevel === 'debug') { traceSdpErrors(); }
      }
      const tracks = [];
      if (options.audio || options.video) {
        tracks.push(...await Video.createLocalTracks({ audio: !!options.audio, video: options.video ? { width: 320, height: 240 } : false }));
      }
      if (options.data) {
        state.dataTrack = new Video.LocalDataTrack({ name: 'data' });
        tracks.push(state.dataTrack);
      }
      send('connecting', { tracks: tracks.map((t) => ({ kind: t.kind, id: t.id, name: t.name })) });
      let room;
      try {
        room = await Video.connect(options.token, {
          name: options.name,
          wsServer: options.wsServer,
          iceServers: [],
          insights: false,
          tracks,
          dominantSpeaker: !!options.dominantSpeaker,
          networkQuality: !!options.networkQuality,
        });
      } catch (error) {
        send('connectFailed', { error: errorInfo(error) });
        return;
      }
      state.room = room;
      send('connected', {
        room: { sid: room.sid, name: room.name, state: room.state },
        localParticipant: participantInfo(room.localParticipant),
        participants: Array.from(room.participants.values()).map(participantInfo),
      });
      const local = room.localParticipant;
      local.on('trackPublished', (pub) => send('localTrackPublished', { publication: { trackSid: pub.trackSid, trackName: pub.trackName, kind: pub.kind } }));
      local.on('trackPublicationFailed', (error, track) => send('localTrackPublicationFailed', { error: errorInfo(error), kind: track.kind, name: track.name }));
      room.participants.forEach((p) => watchParticipant(room, p));
      room.on('participantConnected', (p) => { send('participantConnected', { participant: participantInfo(p) }); watchParticipant(room, p); });
      room.on('participantDisconnected', (p) => send('participantDisconnected', { participant: participantInfo(p) }));
      room.on('dominantSpeakerChanged', (p) => send('dominantSpeakerChanged', { participant: p ? p.sid : null }));
      room.on('reconnecting', (error) => send('reconnecting', { error: errorInfo(error) }));
      room.on('reconnected', () => send('reconnected'));
      room.on('recordingStarted', () => send('recordingStarted'));
      room.on('recordingStopped', () => send('recordingStopped'));
      room.on('disconnected', (r, error) => send('disconnected', { error: errorInfo(error) }));
    },

    /** Publish a new track of kind 'audio' | 'video' | 'data'. */
    async publish(kind) {
      let track;
      if (kind === 'data') {
        track = new Video.LocalDataTrack({ name: 'data2' });
      } else {
        track = kind === 'audio' ? await Video.createLocalAudioTrack() : await Video.createLocalVideoTrack({ width: 320, height: 240 });
      }
      try {
        const pub = await state.room.localParticipant.publishTrack(track);
        send('published', { trackSid: pub.trackSid, kind: pub.kind, name: pub.trackName });
      } catch (error) {
        send('publishFailed', { error: errorInfo(error) });
      }
    },

    /** Unpublish every local track of the given kind. */
    unpublish(kind) {
      const pubs = Array.from(state.room.localParticipant.tracks.values()).filter((p) => p.kind === kind);
      pubs.forEach((p) => { p.unpublish(); p.track.stop && p.track.stop(); });
      send('unpublished', { kind, count: pubs.length });
    },

    /** Disable (mute) or enable every local track of the given kind. */
    setEnabled(kind, enabled) {
      state.room.localParticipant.tracks.forEach((p) => { if (p.kind === kind && p.track.enable) { p.track.enable(enabled); } });
      send('setEnabled', { kind, enabled });
    },

    sendData(text) {
      const pub = Array.from(state.room.localParticipant.dataTracks.values())[0];
      if (pub) { pub.track.send(text); }
      send('dataSent', { text, ok: !!pub });
    },

    /** The browser's own RTP statistics, per direction and kind: codec, packets,
     *  frames decoded and audio energy (twilio-video's getStats() leaves remote
     *  tracks' codec and counts empty in current Chromium). */
    async stats() {
      const streams = [];
      for (const pc of peerConnections) {
        const report = await pc.getStats();
        report.forEach((stat) => {
          if (stat.type !== 'inbound-rtp' && stat.type !== 'outbound-rtp') { return; }
          const codec = stat.codecId && report.get(stat.codecId);
          streams.push({
            direction: stat.type === 'inbound-rtp' ? 'in' : 'out',
            kind: stat.kind,
            mid: stat.mid,
            codec: codec ? codec.mimeType.toLowerCase() : null,
            packets: stat.type === 'inbound-rtp' ? stat.packetsReceived : stat.packetsSent,
            framesDecoded: stat.framesDecoded || 0,
            audioEnergy: stat.totalAudioEnergy || 0,
            samples: stat.totalSamplesReceived || 0,
            concealed: stat.concealedSamples || 0,
          });
        });
      }
      send('stats', { streams });
    },

    disconnect() {
      if (state.room) { state.room.disconnect(); }
    },
  };
  send('ready', { version: Video.version });
})();
