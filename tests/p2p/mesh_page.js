// Added after twilio_app.js in the P2P browser tests: what one page's participant
// receives, over all the peer connections twilio-video opened (one per other
// participant in a peer-to-peer room). Every RTCPeerConnection that is given a remote
// description is noted (patching the prototype keeps twilio-video's own wrapper).
(function () {
  'use strict';
  const peerConnections = new Set();
  const setRemoteDescription = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (...args) {
    peerConnections.add(this);
    return setRemoteDescription.apply(this, args);
  };

  // Remote audio played out (Chrome decodes it for a sink) and measured by an analyser.
  const listening = new Map();
  function listen(track) {
    if (listening.has(track)) { return listening.get(track); }
    const stream = new MediaStream([track]);
    const audio = new Audio();
    audio.srcObject = stream;
    audio.play().catch(() => {});
    const context = new AudioContext();
    context.resume();
    const analyser = context.createAnalyser();
    analyser.fftSize = 2048;
    context.createMediaStreamSource(stream).connect(analyser);
    const entry = { audio, analyser, loudest: 0 };
    listening.set(track, entry);
    return entry;
  }

  window.mesh = {
    /** The loudest RMS (0-1) heard so far on each remote audio track, one per peer connection. */
    loudness() {
      const levels = [];
      for (const pc of peerConnections) {
        if (pc.connectionState === 'closed') { continue; }
        pc.getReceivers().forEach((receiver) => {
          if (receiver.track.kind !== 'audio' || receiver.track.readyState !== 'live') { return; }
          const entry = listen(receiver.track);
          const samples = new Float32Array(entry.analyser.fftSize);
          entry.analyser.getFloatTimeDomainData(samples);
          const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
          entry.loudest = Math.max(entry.loudest, rms);
          levels.push(entry.loudest);
        });
      }
      return levels;
    },

    /** The peer connections that are open (connected), and all that ever had a remote side. */
    peerConnections() {
      const all = [...peerConnections];
      return { connected: all.filter((pc) => pc.connectionState === 'connected').length,
               states: all.map((pc) => pc.connectionState) };
    },

    /** Every inbound stream: kind, codec, packets, frames decoded and their size, audio energy. */
    async inbound() {
      const streams = [];
      for (const pc of peerConnections) {
        if (pc.connectionState === 'closed') { continue; }
        const stats = await pc.getStats();
        stats.forEach((report) => {
          if (report.type !== 'inbound-rtp') { return; }
          const codec = report.codecId && stats.get(report.codecId);
          streams.push({
            kind: report.kind, codec: codec ? codec.mimeType : null,
            packets: report.packetsReceived || 0, framesDecoded: report.framesDecoded || 0,
            width: report.frameWidth || 0, height: report.frameHeight || 0,
            energy: report.totalAudioEnergy || 0, level: report.audioLevel || 0,
          });
        });
      }
      return streams;
    },

    /** The remote candidates of the selected pairs: where media really comes from. */
    async remoteAddresses() {
      const addresses = [];
      for (const pc of peerConnections) {
        if (pc.connectionState !== 'connected') { continue; }
        const stats = await pc.getStats();
        stats.forEach((report) => {
          if (report.type === 'candidate-pair' && report.nominated && report.state === 'succeeded') {
            const remote = stats.get(report.remoteCandidateId);
            if (remote) { addresses.push(`${remote.address}:${remote.port}`); }
          }
        });
      }
      return addresses;
    },
  };
}());
