// WebSocketPeerConnection: an RTCPeerConnection whose media travels over the
// jupyter_video server's media socket ({base}video/media) instead of ICE/UDP,
// for networks where only the server's URL reaches (Binder, a hub behind its
// HTTP proxy). twilio-video.js takes it through its documented connect option:
//
//   import { WebSocketPeerConnection } from './websocket_peer_connection.js';
//   Video.connect(token, { name, wsServer,
//     RTCPeerConnection: WebSocketPeerConnection.forServer('https://host/base/') });
//
// It is negotiated with SDP as any peer connection (m-sections, mids, codecs,
// a=msid track ids; the media socket dialect of docs/media_socket.md, marked
// a=x-jupyter-video-transport:websocket), so twilio-video's room, tracks and
// events stay its own. Local tracks are encoded with WebCodecs (VideoEncoder
// VP8, AudioEncoder Opus; frames from MediaStreamTrackProcessor), remote
// frames decoded with VideoDecoder / AudioDecoder into MediaStreamTrackGenerator
// tracks, data channels are channels of the socket. Only the part of
// RTCPeerConnection twilio-video 2.x uses (signaling/v2/peerconnection.js) is here.

const FRAME = 1;
const DATA = 2;
const KEYFRAME = 1;
const FIRST = 2;
const LAST = 4;
const BINARY = 1;
const ANSWER = 2; // DATA on a channel the receiver opened
const LEVEL_SHIFT = 3; // FRAME flags bits 3-7: an audio frame's -dBov / 4 (31 silence)
const FRAME_HEADER = 16;
const DATA_HEADER = 4;
const FRAGMENT_SIZE = 4 * 1024;
const ACK_INTERVAL_MS = 50;
const VIDEO_HIGH_WATER = 256 * 1024; // socket bytes buffered before video waits
const VIDEO_DROP_WATER = 2 * 1024 * 1024; // ... before video frames are dropped
const TRANSPORT = 'a=x-jupyter-video-transport:websocket';
const CREDENTIAL = 'a=x-jupyter-video-media:';
const CODECS = {
  audio: [{ pt: 111, name: 'opus', clock: 48000, channels: 2, fmtp: 'minptime=10;useinbandfec=1' }],
  video: [{ pt: 96, name: 'VP8', clock: 90000 }],
};

const nowMs = () => Math.round(performance.now()) >>> 0;

function event(type, fields) {
  const e = new Event(type);
  return Object.assign(e, fields || {});
}

// EventTarget with the on<type> handler properties twilio-video also uses.
class Emitter extends EventTarget {
  emit(e) {
    const handler = this[`on${e.type}`];
    if (typeof handler === 'function') { handler.call(this, e); }
    this.dispatchEvent(e);
  }
}

// ------------------------------------------------------------------ SDP

function parseSections(sdp) {
  const sections = [];
  let current = null;
  for (const raw of sdp.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('m=')) {
      const [kind, port, , ...formats] = line.slice(2).split(' ');
      current = { kind, mid: String(sections.length), direction: 'sendrecv', rejected: port === '0',
        formats: formats.map(Number), rtpmap: {}, fmtp: {}, msid: null };
      sections.push(current);
    } else if (!current) {
      continue;
    } else if (line.startsWith('a=mid:')) {
      current.mid = line.slice(6);
    } else if (['a=sendrecv', 'a=sendonly', 'a=recvonly', 'a=inactive'].includes(line)) {
      current.direction = line.slice(2);
    } else if (line.startsWith('a=msid:')) {
      const ids = line.slice(7).split(' ');
      if (ids.length === 2) { current.msid = ids; }
    } else if (line.startsWith('a=rtpmap:')) {
      const [pt, spec] = line.slice(9).split(' ');
      const [name, clock, channels] = spec.split('/');
      current.rtpmap[Number(pt)] = { pt: Number(pt), name, clock: Number(clock), channels: Number(channels || 0) };
    } else if (line.startsWith('a=fmtp:')) {
      const space = line.indexOf(' ');
      current.fmtp[Number(line.slice(7, space))] = line.slice(space + 1);
    }
  }
  for (const section of sections) {
    section.codecs = section.formats.map((pt) => section.rtpmap[pt]).filter(
      (c) => c && ['vp8', 'opus'].includes(c.name.toLowerCase()))
      .map((c) => Object.assign(c, { fmtp: section.fmtp[c.pt] || '' }));
  }
  return sections;
}

function writeSdp(sections, version) {
  const lines = ['v=0', `o=- 4611731400430051336 ${version} IN IP4 0.0.0.0`, 's=-', 't=0 0',
    `a=group:BUNDLE ${sections.filter((s) => !s.rejected).map((s) => s.mid).join(' ')}`,
    'a=msid-semantic: WMS *', TRANSPORT];
  for (const s of sections) {
    if (s.kind === 'application') {
      lines.push(`m=application ${s.rejected ? 0 : 9} UDP/DTLS/SCTP webrtc-datachannel`, 'c=IN IP4 0.0.0.0',
        `a=mid:${s.mid}`, 'a=sctp-port:5000');
      continue;
    }
    const codecs = s.codecs || [];
    const port = s.rejected || !codecs.length ? 0 : 9;
    lines.push(`m=${s.kind} ${port} UDP/TLS/RTP/SAVPF ${codecs.map((c) => c.pt).join(' ') || '0'}`,
      'c=IN IP4 0.0.0.0', `a=mid:${s.mid}`, `a=${s.direction}`);
    if (s.msid) { lines.push(`a=msid:${s.msid[0]} ${s.msid[1]}`); }
    for (const c of codecs) {
      lines.push(`a=rtpmap:${c.pt} ${c.name}/${c.clock}${c.channels ? `/${c.channels}` : ''}`);
      if (c.fmtp) { lines.push(`a=fmtp:${c.pt} ${c.fmtp}`); }
    }
  }
  return lines.join('\r\n') + '\r\n';
}

function answerDirection(offered, weSend) {
  const theySend = offered === 'sendrecv' || offered === 'sendonly';
  const mayWeSend = (offered === 'sendrecv' || offered === 'recvonly') && weSend;
  return theySend ? (mayWeSend ? 'sendrecv' : 'recvonly') : (mayWeSend ? 'sendonly' : 'inactive');
}

const flip = (direction) => ({ sendonly: 'recvonly', recvonly: 'sendonly' })[direction] || direction;

// ------------------------------------------------------------------ binary messages

function frameMessages(channel, sequence, timestamp, keyframe, data, sentMs, audioLevel = 127) {
  const messages = [];
  const level = Math.min(31, Math.max(0, Math.floor(audioLevel / 4))) << LEVEL_SHIFT;
  for (let start = 0; start < data.byteLength; start += FRAGMENT_SIZE) {
    const end = Math.min(start + FRAGMENT_SIZE, data.byteLength);
    const message = new Uint8Array(FRAME_HEADER + end - start);
    const view = new DataView(message.buffer);
    let flags = (keyframe ? KEYFRAME : 0) | level;
    if (start === 0) { flags |= FIRST; }
    if (end === data.byteLength) { flags |= LAST; }
    view.setUint8(0, FRAME);
    view.setUint8(1, flags);
    view.setUint16(2, channel);
    view.setUint32(4, sequence >>> 0);
    view.setUint32(8, timestamp >>> 0);
    view.setUint32(12, sentMs >>> 0);
    message.set(data.subarray(start, end), FRAME_HEADER);
    messages.push(message.buffer);
  }
  return messages;
}

function dataMessage(channel, data, answer = false) {
  let payload;
  let flags = answer ? ANSWER : 0;
  if (typeof data === 'string') {
    payload = new TextEncoder().encode(data);
  } else {
    flags |= BINARY;
    payload = data instanceof ArrayBuffer ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  const message = new Uint8Array(DATA_HEADER + payload.byteLength);
  const view = new DataView(message.buffer);
  view.setUint8(0, DATA);
  view.setUint8(1, flags);
  view.setUint16(2, channel);
  message.set(payload, DATA_HEADER);
  return message.buffer;
}

/** RFC 6464's level of an AudioData: -dBov of its RMS (0 loudest, 127 silence). */
function audioLevel(data) {
  try {
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
    let sum = 0;
    for (let i = 0; i < samples.length; i++) { sum += samples[i] * samples[i]; }
    const rms = Math.sqrt(sum / (samples.length || 1));
    return rms > 0 ? Math.min(127, Math.max(0, Math.round(-20 * Math.log10(rms)))) : 127;
  } catch (e) {
    return 127;
  }
}

// ------------------------------------------------------------------ parts

class SocketDataChannel extends Emitter {
  constructor(pc, label, init = {}) {
    super();
    this._pc = pc;
    this.label = label;
    this.ordered = init.ordered !== false;
    this.maxPacketLifeTime = init.maxPacketLifeTime ?? null;
    this.maxRetransmits = init.maxRetransmits ?? null;
    this.protocol = '';
    this.negotiated = false;
    this.id = null;
    this.readyState = 'connecting';
    this.binaryType = 'arraybuffer';
    this.bufferedAmount = 0;
    this.bufferedAmountLowThreshold = 0;
    this.channel = null;
    this._answer = false; // opened by the server: what we send answers on its channel
  }

  send(data) {
    if (this.readyState !== 'open') {
      throw new DOMException(`data channel ${this.label} is ${this.readyState}`, 'InvalidStateError');
    }
    this._pc._sendUrgent(dataMessage(this.channel, data, this._answer));
  }

  close() {
    if (this.readyState === 'closed') { return; }
    this.readyState = 'closed';
    this.emit(event('close'));
  }

  _open(channel) {
    this.channel = channel;
    this.id = channel;
    if (this.readyState === 'connecting') {
      this.readyState = 'open';
      this.emit(event('open'));
    }
  }
}

class SocketSender {
  constructor(transceiver, track) {
    this._transceiver = transceiver;
    this.track = track;
    this.transport = null;
    this.dtmf = null;
    this._parameters = { transactionId: '1', encodings: [{ active: true }], codecs: [], headerExtensions: [], rtcp: {} };
  }

  replaceTrack(track) {
    this.track = track;
    this._transceiver._pc._followSenders();
    return Promise.resolve();
  }

  getParameters() { return JSON.parse(JSON.stringify(this._parameters)); }

  setParameters(parameters) {
    this._parameters = parameters;
    const bitrate = parameters.encodings && parameters.encodings[0] && parameters.encodings[0].maxBitrate;
    if (bitrate) { this._transceiver._maxBitrate = bitrate; }
    return Promise.resolve();
  }

  getStats() { return Promise.resolve(new Map()); }
}

class SocketReceiver {
  constructor(kind) {
    this.kind = kind;
    this.track = null;
    this.transport = null;
  }

  getStats() { return Promise.resolve(new Map()); }

  getContributingSources() { return []; }

  getSynchronizationSources() { return []; }

  getParameters() { return { codecs: [], encodings: [], headerExtensions: [], rtcp: {} }; }
}

class SocketTransceiver {
  constructor(pc, kind, direction, track) {
    this._pc = pc;
    this.kind = kind;
    this.mid = null;
    this.direction = direction;
    this.currentDirection = null;
    this.stopped = false;
    this.sender = new SocketSender(this, track || null);
    this.receiver = new SocketReceiver(kind);
    this.codec = null;
    this._preferences = null;
    this._remoteTrackId = null;
  }

  setCodecPreferences(codecs) { this._preferences = codecs; }

  stop() {
    this.stopped = true;
    this.direction = 'stopped';
    this.currentDirection = 'stopped';
    this._pc._followSenders();
  }

  _codecs() {
    const ours = CODECS[this.kind] || [];
    if (this.codec) { return [this.codec]; }
    if (!this._preferences || !this._preferences.length) { return ours; }
    const order = this._preferences.map((c) => c.mimeType.split('/')[1].toLowerCase());
    return ours.slice().sort((a, b) => {
      const ia = order.indexOf(a.name.toLowerCase());
      const ib = order.indexOf(b.name.toLowerCase());
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    });
  }
}

// A local track's encoder: MediaStreamTrackProcessor -> WebCodecs -> FRAME messages.
class TrackSender {
  constructor(pc, channel, track, codec, transceiver) {
    this.pc = pc;
    this.channel = channel;
    this.track = track;
    this.codec = codec;
    this.transceiver = transceiver;
    this.sequence = 0;
    this.level = 127;
    this.keyframeWanted = true;
    this.stopped = false;
    this.reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    this.encoder = null;
    this.configured = null;
    this.run();
  }

  makeEncoder() {
    const output = (chunk) => {
      const data = new Uint8Array(chunk.byteLength);
      chunk.copyTo(data);
      const clock = this.track.kind === 'audio' ? 48000 : 90000;
      const timestamp = Math.round(chunk.timestamp * clock / 1e6);
      const messages = frameMessages(this.channel, ++this.sequence, timestamp,
        this.track.kind === 'audio' || chunk.type === 'key', data, nowMs(),
        this.track.kind === 'audio' ? this.level : 127);
      if (this.track.kind === 'audio') {
        messages.forEach((m) => this.pc._sendUrgent(m));
      } else {
        this.pc._sendVideo(messages);
      }
      this.pc._framesSent += 1;
    };
    const error = (e) => { this.pc._log(`encoder error: ${e.message}`); this.configured = null; };
    return this.track.kind === 'audio' ? new AudioEncoder({ output, error }) : new VideoEncoder({ output, error });
  }

  configure(frame) {
    if (this.track.kind === 'audio') {
      const key = `${frame.sampleRate}/${frame.numberOfChannels}`;
      if (this.configured === key) { return; }
      this.encoder = this.encoder && this.encoder.state !== 'closed' ? this.encoder : this.makeEncoder();
      this.encoder.configure({ codec: 'opus', sampleRate: frame.sampleRate, numberOfChannels: frame.numberOfChannels,
        bitrate: 32000, opus: { frameDuration: 20000 } });
      this.configured = key;
      return;
    }
    const key = `${frame.displayWidth}x${frame.displayHeight}`;
    if (this.configured === key) { return; }
    this.encoder = this.encoder && this.encoder.state !== 'closed' ? this.encoder : this.makeEncoder();
    this.encoder.configure({ codec: 'vp8', width: frame.displayWidth, height: frame.displayHeight,
      bitrate: this.transceiver._maxBitrate || 1_000_000, framerate: 30, latencyMode: 'realtime' });
    this.configured = key;
    this.keyframeWanted = true;
  }

  async run() {
    while (!this.stopped) {
      let result;
      try {
        result = await this.reader.read();
      } catch (e) {
        return;
      }
      if (result.done) { return; }
      const frame = result.value;
      try {
        this.configure(frame);
        const video = this.track.kind === 'video';
        // Behind: drop this frame (the next one sent is a keyframe).
        if (video && (this.encoder.encodeQueueSize > 2 || this.pc._bufferedVideo() > VIDEO_DROP_WATER)) {
          this.keyframeWanted = true;
        } else if (video) {
          this.encoder.encode(frame, { keyFrame: this.keyframeWanted });
          this.keyframeWanted = false;
        } else {
          this.level = audioLevel(frame);
          this.encoder.encode(frame);
        }
      } catch (e) {
        this.pc._log(`encoding failed: ${e.message}`);
      } finally {
        frame.close();
      }
    }
  }

  stop() {
    this.stopped = true;
    this.reader.cancel().catch(() => {});
    if (this.encoder && this.encoder.state !== 'closed') { this.encoder.close(); }
  }
}

// A subscription's decoder: FRAME messages -> WebCodecs -> MediaStreamTrackGenerator.
class TrackReceiver {
  constructor(pc, channel, kind, transceiver) {
    this.pc = pc;
    this.channel = channel;
    this.kind = kind;
    this.transceiver = transceiver;
    this.generator = transceiver.receiver.track;
    // One writer per generator: a section's track outlives the subscriptions it carries.
    if (!writers.has(this.generator)) { writers.set(this.generator, this.generator.writable.getWriter()); }
    this.writer = writers.get(this.generator);
    this.waitingForKeyframe = kind === 'video';
    this.bytes = 0;
    this.frames = 0;
    const output = (frame) => {
      if (this.writer.desiredSize !== null && this.writer.desiredSize <= -5) { frame.close(); return; }
      this.writer.write(frame).catch(() => {});
    };
    const error = (e) => { this.pc._log(`decoder error: ${e.message}`); if (!this.stopped) { this.reset(); } };
    this.output = output;
    this.error = error;
    this.decoder = null;
    this.reset();
  }

  reset() {
    if (this.decoder && this.decoder.state !== 'closed') { this.decoder.close(); }
    if (this.kind === 'video') {
      this.decoder = new VideoDecoder({ output: this.output, error: this.error });
      this.decoder.configure({ codec: 'vp8', optimizeForLatency: true });
      this.waitingForKeyframe = true;
    } else {
      this.decoder = new AudioDecoder({ output: this.output, error: this.error });
      this.decoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 2 });
    }
  }

  take(frame) {
    this.bytes += frame.data.byteLength;
    this.frames += 1;
    if (this.kind === 'video') {
      if (this.waitingForKeyframe && !frame.keyframe) {
        this.pc._requestKeyframe(this.channel);
        return;
      }
      this.waitingForKeyframe = false;
      this.decoder.decode(new EncodedVideoChunk({ type: frame.keyframe ? 'key' : 'delta',
        timestamp: Math.round(frame.timestamp * 1e6 / 90000), data: frame.data }));
    } else {
      this.decoder.decode(new EncodedAudioChunk({ type: 'key',
        timestamp: Math.round(frame.timestamp * 1e6 / 48000), data: frame.data }));
    }
  }

  stop() {
    this.stopped = true;
    if (this.decoder && this.decoder.state !== 'closed') { this.decoder.close(); }
  }
}

const writers = new WeakMap(); // MediaStreamTrackGenerator -> its writer

// ------------------------------------------------------------------ the peer connection

export class WebSocketPeerConnection extends Emitter {
  /** A WebSocketPeerConnection class bound to the jupyter_video server at ``base``
   *  (its base URL: http(s) or ws(s), ending in "/"). */
  static forServer(base) {
    const url = new URL('video/media', new URL(base, window.location.href));
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return WebSocketPeerConnection.forMediaUrl(url.href);
  }

  /** The class for a media socket URL as /video/token gives it (``media_server``). */
  static forMediaUrl(mediaUrl) {
    return class extends WebSocketPeerConnection {
      constructor(configuration, constraints) { super(configuration, constraints, mediaUrl); }
    };
  }

  constructor(configuration = {}, constraints = {}, mediaUrl = null) {
    super();
    this._configuration = configuration;
    this._mediaUrl = mediaUrl || WebSocketPeerConnection.mediaUrl;
    this._transceivers = [];
    this._channels = [];
    this._applicationMid = null;
    this._version = 0;
    this._pendingMids = [];
    this._current = { local: null, remote: null };
    this._pending = { local: null, remote: null };
    this.signalingState = 'stable';
    this.iceConnectionState = 'new';
    this.connectionState = 'new';
    this.iceGatheringState = 'new';
    this.sctp = null;
    this.canTrickleIceCandidates = false;
    this._socket = null;
    this._credential = null;
    this._numbers = 1;
    this._urgent = [];
    this._video = [];
    this._flushTimer = null;
    this._senders = new Map(); // transceiver -> TrackSender
    this._receivers = new Map(); // channel -> TrackReceiver
    this._dataIn = new Map(); // channel -> SocketDataChannel
    this._bytesReceived = 0;
    this._binaryReceived = 0; // what acks say: the server's flow control
    this._acked = 0;
    this._bytesSent = 0;
    this._framesSent = 0;
    this._reports = null;
    this._closed = false;
  }

  get localDescription() { return this._pending.local || this._current.local; }

  get remoteDescription() { return this._pending.remote || this._current.remote; }

  get currentLocalDescription() { return this._current.local; }

  get currentRemoteDescription() { return this._current.remote; }

  get pendingLocalDescription() { return this._pending.local; }

  get pendingRemoteDescription() { return this._pending.remote; }

  getConfiguration() { return this._configuration; }

  setConfiguration(configuration) { this._configuration = configuration; }

  getTransceivers() { return this._transceivers.slice(); }

  getSenders() { return this._transceivers.filter((t) => !t.stopped).map((t) => t.sender); }

  getReceivers() { return this._transceivers.filter((t) => !t.stopped).map((t) => t.receiver); }

  addTransceiver(trackOrKind, init = {}) {
    const track = typeof trackOrKind === 'string' ? null : trackOrKind;
    const kind = track ? track.kind : trackOrKind;
    const transceiver = new SocketTransceiver(this, kind, init.direction || 'sendrecv', track);
    this._transceivers.push(transceiver);
    return transceiver;
  }

  addTrack(track) { return this.addTransceiver(track).sender; }

  removeTrack(sender) {
    const transceiver = this._transceivers.find((t) => t.sender === sender);
    if (!transceiver) { return; }
    sender.track = null;
    transceiver.direction = transceiver.direction === 'sendrecv' ? 'recvonly' : 'inactive';
    this._followSenders();
  }

  createDataChannel(label, init = {}) {
    const channel = new SocketDataChannel(this, label, init);
    this._channels.push(channel);
    this.sctp = this.sctp || { state: 'connected', maxMessageSize: 262144 };
    if (this._socket && this._socket.readyState === WebSocket.OPEN) { this._openDataChannel(channel); }
    return channel;
  }

  async createOffer(options = {}) {
    if (options.iceRestart) { this._reconnect(); }
    const used = new Set(this._transceivers.map((t) => t.mid).concat([this._applicationMid]));
    let next = 0;
    const newMid = () => { while (used.has(String(next))) { next += 1; } used.add(String(next)); return String(next); };
    const sections = this._transceivers.filter((t) => !t.stopped).map((t) => {
      const mid = t.mid || (t._tentativeMid = t._tentativeMid || newMid());
      const track = t.sender.track;
      const sends = track && ['sendrecv', 'sendonly'].includes(t.direction);
      return { kind: t.kind, mid, direction: t.direction, codecs: t._codecs(),
        msid: sends ? ['-', track.id] : null };
    });
    if (this.sctp) {
      sections.push({ kind: 'application', mid: this._applicationMid || (this._tentativeApplicationMid = this._tentativeApplicationMid || newMid()) });
    }
    return { type: 'offer', sdp: writeSdp(sections, ++this._version) };
  }

  async createAnswer() {
    const remote = this.remoteDescription;
    if (!remote || remote.type !== 'offer') {
      throw new DOMException('createAnswer needs a remote offer', 'InvalidStateError');
    }
    const sections = parseSections(remote.sdp).map((media) => {
      if (media.kind === 'application') { return { kind: 'application', mid: media.mid, rejected: media.rejected }; }
      const t = this._byMid(media.mid);
      if (!t || media.rejected || !media.codecs.length) {
        return { kind: media.kind, mid: media.mid, direction: 'inactive', codecs: [], rejected: true };
      }
      const track = t.sender.track;
      const sends = !!track && ['sendrecv', 'sendonly'].includes(t.direction);
      return { kind: media.kind, mid: media.mid, direction: answerDirection(media.direction, sends),
        codecs: [media.codecs[0]], msid: sends ? ['-', track.id] : null };
    });
    return { type: 'answer', sdp: writeSdp(sections, ++this._version) };
  }

  async setLocalDescription(description) {
    const { type, sdp } = description;
    if (type === 'rollback') {
      if (this.signalingState !== 'have-local-offer') { return; }
      for (const t of this._pendingMids) { t.mid = null; }
      this._pendingMids = [];
      this._pending.local = null;
      this._setSignalingState('stable');
      return;
    }
    if (type === 'offer') {
      if (this.signalingState !== 'stable' && this.signalingState !== 'have-local-offer') {
        throw new DOMException(`Cannot set a local offer in ${this.signalingState}`, 'InvalidStateError');
      }
      this._pendingMids = [];
      const mids = new Set(parseSections(sdp).map((s) => s.mid));
      for (const t of this._transceivers) {
        if (!t.stopped && !t.mid && mids.has(t._tentativeMid)) {
          t.mid = t._tentativeMid;
          this._pendingMids.push(t);
        }
      }
      if (!this._applicationMid && mids.has(this._tentativeApplicationMid)) {
        this._applicationMid = this._tentativeApplicationMid;
      }
      this._pending.local = { type, sdp };
      this._setSignalingState('have-local-offer');
    } else if (type === 'answer' || type === 'pranswer') {
      if (this.signalingState !== 'have-remote-offer') {
        throw new DOMException(`Cannot set a local answer in ${this.signalingState}`, 'InvalidStateError');
      }
      this._current = { local: { type: 'answer', sdp }, remote: this._pending.remote };
      this._pending = { local: null, remote: null };
      this._negotiated(sdp, true);
      this._setSignalingState('stable');
    }
    this._gatheringComplete();
  }

  async setRemoteDescription(description) {
    const { type, sdp } = description;
    if (type === 'rollback') {
      this._pending.remote = null;
      this._setSignalingState('stable');
      return;
    }
    if (!sdp || !sdp.split(/\r?\n/).includes(TRANSPORT)) {
      throw new DOMException('The server described ICE, not a media socket: it does not take WebSocket media', 'OperationError');
    }
    const credential = sdp.split(/\r?\n/).find((l) => l.startsWith(CREDENTIAL));
    if (credential) { this._credential = credential.slice(CREDENTIAL.length).trim().split(' '); }
    if (type === 'offer') {
      if (this.signalingState !== 'stable' && this.signalingState !== 'have-remote-offer') {
        throw new DOMException(`Cannot set a remote offer in ${this.signalingState}`, 'InvalidStateError');
      }
      const sections = parseSections(sdp);
      for (const media of sections) {
        if (media.kind === 'application') { this._applicationMid = media.mid; continue; }
        if (!this._byMid(media.mid)) {
          const t = this.addTransceiver(media.kind, { direction: 'recvonly' });
          t.mid = media.mid;
        }
      }
      this._pending.remote = { type, sdp };
      this._setSignalingState('have-remote-offer');
      this._announceTracks(sections);
    } else if (type === 'answer' || type === 'pranswer') {
      if (this.signalingState !== 'have-local-offer') {
        throw new DOMException(`Cannot set a remote answer in ${this.signalingState}`, 'InvalidStateError');
      }
      this._current = { local: this._pending.local, remote: { type: 'answer', sdp } };
      this._pending = { local: null, remote: null };
      this._pendingMids = [];
      this._announceTracks(parseSections(sdp));
      this._negotiated(sdp, false);
      this._setSignalingState('stable');
    }
    this._connect();
  }

  async addIceCandidate() { /* a media socket has no ICE */ }

  async getStats() {
    // iceconnectionmonitor.js reads bytesReceived of the nominated candidate pair.
    const now = Date.now();
    return new Map([['socket', { id: 'socket', type: 'candidate-pair', nominated: true, state: 'succeeded',
      bytesReceived: this._bytesReceived, bytesSent: this._bytesSent, timestamp: now }]]);
  }

  close() {
    if (this._closed) { return; }
    this._closed = true;
    clearInterval(this._reports);
    clearInterval(this._acks);
    for (const sender of this._senders.values()) { sender.stop(); }
    for (const receiver of this._receivers.values()) { receiver.stop(); }
    for (const t of this._transceivers) { if (t.receiver.track) { t.receiver.track.stop(); } }
    for (const channel of this._channels.concat(Array.from(this._dataIn.values()))) { channel.close(); }
    if (this._socket) { this._socket.close(1000); }
    this.signalingState = 'closed';
    this._setIceState('closed');
  }

  // ------------------------------------------------------------ negotiation

  _byMid(mid) { return this._transceivers.find((t) => t.mid === mid && !t.stopped); }

  _setSignalingState(state) {
    if (this.signalingState === state) { return; }
    this.signalingState = state;
    this.emit(event('signalingstatechange'));
  }

  _gatheringComplete() {
    // No candidates to gather: straight to "complete" (twilio-video starts its ICE
    // gathering timeout only on "gathering").
    if (this.iceGatheringState !== 'complete') {
      this.iceGatheringState = 'complete';
      this.emit(event('icegatheringstatechange'));
    }
  }

  _setIceState(state) {
    if (this.iceConnectionState !== state) {
      this.iceConnectionState = state;
      this.emit(event('iceconnectionstatechange'));
    }
    if (this.connectionState !== state && state !== 'checking' && state !== 'completed') {
      this.connectionState = state === 'disconnected' ? 'disconnected' : state;
      this.emit(event('connectionstatechange'));
    } else if (state === 'checking' && this.connectionState === 'new') {
      this.connectionState = 'connecting';
      this.emit(event('connectionstatechange'));
    }
  }

  _announceTracks(sections) {
    // A 'track' event for each section the server sends a (new) track on.
    for (const media of sections) {
      const t = this._byMid(media.mid);
      if (!t || media.kind === 'application' || media.rejected || !media.msid) { continue; }
      if (t._remoteTrackId === media.msid[1]) { continue; }
      t._remoteTrackId = media.msid[1];
      const generator = new MediaStreamTrackGenerator({ kind: t.kind });
      t.receiver.track = generator;
      const stream = new MediaStream([generator]);
      this.emit(event('track', { track: generator, receiver: t.receiver, transceiver: t, streams: [stream] }));
    }
  }

  _negotiated(answer, local) {
    for (const media of parseSections(answer)) {
      const t = this._byMid(media.mid);
      if (!t || media.kind === 'application') { continue; }
      t.currentDirection = media.rejected ? 'inactive' : (local ? media.direction : flip(media.direction));
      if (media.codecs.length) { t.codec = media.codecs[0]; }
    }
    this._followSenders();
  }

  // ------------------------------------------------------------ the media socket

  _connect() {
    if (this._socket || this._closed || !this._credential) { return; }
    if (!this._mediaUrl) { throw new Error('WebSocketPeerConnection: no media URL (use WebSocketPeerConnection.forServer(base))'); }
    const socket = new WebSocket(this._mediaUrl);
    socket.binaryType = 'arraybuffer';
    this._socket = socket;
    this._setIceState('checking');
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: 'hello', participant: this._credential[0], key: this._credential[1] }));
    };
    socket.onmessage = (e) => {
      this._bytesReceived += typeof e.data === 'string' ? e.data.length : e.data.byteLength;
      if (typeof e.data === 'string') {
        this._onControl(JSON.parse(e.data));
      } else {
        this._binaryReceived += e.data.byteLength;
        this._onBinary(e.data);
      }
    };
    socket.onclose = (e) => {
      if (this._socket !== socket) { return; }
      this._socket = null;
      this._stopSenders();
      if (!this._closed) {
        this._log(`media socket closed: ${e.code} ${e.reason}`);
        this.lastClose = { code: e.code, reason: e.reason };
        this._setIceState(e.code >= 4000 ? 'failed' : 'disconnected');
      }
    };
  }

  _reconnect() {
    // An ICE restart: a new socket (the server takes the newest one).
    if (this._socket && this._socket.readyState <= WebSocket.OPEN) { return; }
    this._socket = null;
    this._connect();
  }

  _log(message) { console.debug(`[WebSocketPeerConnection] ${message}`); }

  _send(message) {
    this._bytesSent += typeof message === 'string' ? message.length : message.byteLength;
    this._socket.send(message);
  }

  _sendUrgent(message) {
    if (!this._socket || this._socket.readyState !== WebSocket.OPEN) { return; }
    this._send(message);
  }

  _bufferedVideo() {
    return (this._socket ? this._socket.bufferedAmount : 0) + this._video.reduce((n, m) => n + m.byteLength, 0);
  }

  _sendVideo(messages) {
    this._video.push(...messages);
    this._flush();
  }

  _flush() {
    // Video waits while the socket holds much: audio and data (sent at once) pass it.
    while (this._video.length && this._socket && this._socket.readyState === WebSocket.OPEN
           && this._socket.bufferedAmount < VIDEO_HIGH_WATER) {
      this._send(this._video.shift());
    }
    if (this._video.length && !this._flushTimer) {
      this._flushTimer = setTimeout(() => { this._flushTimer = null; this._flush(); }, 5);
    }
  }

  _onControl(body) {
    const channel = body.channel;
    switch (body.type) {
      case 'welcome':
        this._setIceState('connected');
        for (const c of this._channels) { this._openDataChannel(c); }
        this._followSenders();
        clearInterval(this._reports);
        this._reports = setInterval(() => this._sendReports(), 1000);
        clearInterval(this._acks);
        this._acks = setInterval(() => this._sendAck(), ACK_INTERVAL_MS);
        break;
      case 'bitrate':
        // What the slowest subscriber's link takes: the encoder is configured anew.
        for (const sender of this._senders.values()) {
          if (sender.channel === channel && sender.track.kind === 'video') {
            sender.transceiver._maxBitrate = body.bitrate;
            sender.configured = null;
          }
        }
        break;
      case 'subscribe': {
        const t = this._byMid(String(body.mid));
        if (!t || !t.receiver.track) { this._log(`subscribe to unknown mid ${body.mid}`); return; }
        const old = this._receivers.get(channel);
        if (old) { old.stop(); }
        this._receivers.set(channel, new TrackReceiver(this, channel, body.kind, t));
        break;
      }
      case 'unsubscribe': {
        const receiver = this._receivers.get(channel);
        if (receiver) { receiver.stop(); this._receivers.delete(channel); }
        break;
      }
      case 'data_channel': {
        const dataChannel = new SocketDataChannel(this, body.label, { ordered: body.ordered });
        dataChannel._answer = true;
        this._dataIn.set(channel, dataChannel);
        this.sctp = this.sctp || { state: 'connected', maxMessageSize: 262144 };
        this.emit(event('datachannel', { channel: dataChannel }));
        dataChannel._open(channel);
        break;
      }
      case 'keyframe_request':
        for (const sender of this._senders.values()) {
          if (sender.channel === channel) { sender.keyframeWanted = true; }
        }
        break;
      case 'error':
        this._log(`server error ${body.code}: ${body.message}`);
        this.lastError = body;
        break;
      default:
        break;
    }
  }

  _onBinary(buffer) {
    const view = new DataView(buffer);
    const type = view.getUint8(0);
    const channel = view.getUint16(2);
    if (type === DATA) {
      const dataChannel = this._dataIn.get(channel);
      if (!dataChannel || dataChannel.readyState !== 'open') { return; }
      const payload = new Uint8Array(buffer, DATA_HEADER);
      const data = view.getUint8(1) & BINARY ? payload.slice().buffer : new TextDecoder().decode(payload);
      dataChannel.emit(new MessageEvent('message', { data }));
      return;
    }
    if (type !== FRAME) { return; }
    const receiver = this._receivers.get(channel);
    if (!receiver) { return; }
    const flags = view.getUint8(1);
    const sequence = view.getUint32(4);
    const payload = new Uint8Array(buffer, FRAME_HEADER);
    if (flags & FIRST) {
      receiver.partial = { sequence, timestamp: view.getUint32(8), keyframe: !!(flags & KEYFRAME), parts: [payload] };
    } else if (receiver.partial && receiver.partial.sequence === sequence) {
      receiver.partial.parts.push(payload);
    } else {
      return;
    }
    if (flags & LAST) {
      const { parts, timestamp, keyframe } = receiver.partial;
      receiver.partial = null;
      const size = parts.reduce((n, p) => n + p.byteLength, 0);
      const data = new Uint8Array(size);
      let offset = 0;
      for (const p of parts) { data.set(p, offset); offset += p.byteLength; }
      try {
        receiver.take({ data, timestamp, keyframe });
      } catch (e) {
        this._log(`decoding failed: ${e.message}`);
        receiver.reset();
      }
    }
  }

  _requestKeyframe(channel) {
    const now = performance.now();
    if (this._lastKeyframeRequest && now - this._lastKeyframeRequest < 500) { return; }
    this._lastKeyframeRequest = now;
    this._sendUrgent(JSON.stringify({ type: 'keyframe_request', channel }));
  }

  _sendAck() {
    if (this._binaryReceived === this._acked) { return; }
    this._acked = this._binaryReceived;
    this._sendUrgent(JSON.stringify({ type: 'ack', bytes: this._acked, ms: Math.round(performance.now()) }));
  }

  _sendReports() {
    for (const [channel, receiver] of this._receivers) {
      this._sendUrgent(JSON.stringify({ type: 'receiver_report', channel, bytes: receiver.bytes, frames: receiver.frames }));
      receiver.bytes = 0;
      receiver.frames = 0;
    }
  }

  _openDataChannel(channel) {
    if (channel.channel !== null || channel.readyState === 'closed') { return; }
    const number = this._numbers++;
    this._sendUrgent(JSON.stringify({ type: 'data_channel', channel: number, label: channel.label, ordered: channel.ordered }));
    channel._open(number);
  }

  _stopSenders() {
    for (const sender of this._senders.values()) { sender.stop(); }
    this._senders.clear();
  }

  _followSenders() {
    // One encoder per negotiated sending transceiver with a track, on an open socket.
    const open = this._socket && this._socket.readyState === WebSocket.OPEN && this.iceConnectionState === 'connected';
    for (const t of this._transceivers) {
      const track = t.sender.track;
      const sending = open && track && track.readyState !== 'ended' && t.codec && !t.stopped
        && ['sendrecv', 'sendonly'].includes(t.currentDirection);
      const current = this._senders.get(t);
      if (current && (!sending || current.track !== track)) {
        current.stop();
        this._sendUrgent(JSON.stringify({ type: 'unpublish', channel: current.channel }));
        this._senders.delete(t);
      }
      if (sending && !this._senders.get(t)) {
        const channel = this._numbers++;
        this._sendUrgent(JSON.stringify({ type: 'publish', channel, mid: t.mid, codec: t.codec.name }));
        this._senders.set(t, new TrackSender(this, channel, track, t.codec, t));
      }
    }
  }
}

WebSocketPeerConnection.mediaUrl = null;

/** Whether this browser has what a WebSocketPeerConnection needs (WebCodecs, track processors). */
export function webSocketMediaSupported() {
  return typeof VideoEncoder === 'function' && typeof AudioEncoder === 'function'
    && typeof MediaStreamTrackProcessor === 'function' && typeof MediaStreamTrackGenerator === 'function';
}
