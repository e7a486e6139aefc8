// RoomWidget's view: joins a room with twilio-video.js, shows every participant's
// video, plays their audio, and keeps the Python side's traitlets live.
import Video from 'twilio-video';
import css from './styles.css';
import { describeError, isMediaError } from './errors.js';
import { request, serverBase, signalingUrl } from './jupyter.js';
import { WebSocketPeerConnection, webSocketMediaSupported } from './websocket_peer_connection.js';
import { ClassroomPanel } from './classroom.js';

// media_transport "auto": WebRTC first, the media socket when ICE has not
// connected this long after joining, or stays failed this long later in the call.
const ICE_TIMEOUT_MS = 5000;

// One room per widget: a second view of the same widget (the output shown twice)
// would join again under the same identity and push the first out (53205).
const activeViews = new WeakMap();

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') { node.textContent = value; } else { node.setAttribute(name, value); }
  }
  for (const child of children) { node.append(child); }
  return node;
}

function clock(date) {
  return date.toTimeString().slice(0, 8);
}

const decoder = new TextDecoder();

export function renderRoom(model, el) {
  const style = element('style', { text: css });
  if (activeViews.has(model)) {
    el.append(style, element('div', { class: 'jv-room jv-note', text: 'This room is already open in another view of this widget.' }));
    return () => {};
  }
  const view = new RoomView(model, el);
  el.append(style);
  activeViews.set(model, view);
  view.start();
  return () => {
    view.leave();
    view.dispose();
    if (activeViews.get(model) === view) { activeViews.delete(model); }
  };
}


/** The layout traitlet's Bandwidth Profile mode (Twilio's names: grid, collaboration
 *  for a speaker view, presentation). */
const LAYOUT_MODES = { grid: 'grid', speaker: 'collaboration', presentation: 'presentation' };

/** connect() options for ``layout`` over ``transport``: Twilio's recommended
 *  group-room settings (bandwidth profile with automatic switch-off and content
 *  preferences from the tiles' size and visibility, network quality, adaptive
 *  VP8 simulcast). */
export function qualityOptions(layout, transport) {
  const mode = LAYOUT_MODES[layout] || 'grid';
  return {
    bandwidthProfile: { video: {
      mode,
      dominantSpeakerPriority: mode === 'grid' ? 'standard' : 'high',
      clientTrackSwitchOffControl: 'auto',
      contentPreferencesMode: 'auto',
    } },
    networkQuality: { local: 1, remote: 1 },
    ...(transport === 'webrtc' ? { preferredVideoCodecs: 'auto' } : {}),
  };
}

class RoomView {
  constructor(model, el) {
    this.model = model;
    this.root = el;
    this.room = null;
    this.localTracks = [];
    this.screenTrack = null;
    this.dataTrack = null;
    this.excluded = new Set(); // track SIDs unsubscribed through SubscribeRules
    this.messages = [];
    this.tiles = new Map(); // participant SID -> tile
    this.left = false;
    this.base = serverBase(model.get('_server_url'));
    this.build();
    this.onCommand = (message) => this.command(message);
    this.onUnload = () => this.leave();
    model.on('msg:custom', this.onCommand);
    window.addEventListener('beforeunload', this.onUnload);
    window.addEventListener('pagehide', this.onUnload); // iOS Safari has no beforeunload
  }

  // ------------------------------------------------------------------ layout

  build() {
    this.stateBadge = element('span', { class: 'jv-state', 'data-state': 'connecting', text: 'connecting' });
    this.transportBadge = element('span', { class: 'jv-transport', hidden: '', title: 'How media travels' });
    this.title = element('span', { class: 'jv-title', text: this.model.get('room') });
    this.micButton = element('button', { class: 'jv-mic', type: 'button', text: 'Mute' });
    this.camButton = element('button', { class: 'jv-cam', type: 'button', text: 'Stop video' });
    this.screenButton = element('button', { class: 'jv-screen', type: 'button', text: 'Share screen' });
    this.leaveButton = element('button', { class: 'jv-leave', type: 'button', text: 'Leave' });
    this.micButton.onclick = () => this.toggle('audio');
    this.camButton.onclick = () => this.toggle('video');
    this.screenButton.onclick = () => this.toggleScreen();
    this.leaveButton.onclick = () => this.leave();
    for (const button of [this.micButton, this.camButton, this.screenButton, this.leaveButton]) { button.disabled = true; }
    this.errorBox = element('div', { class: 'jv-error', hidden: '' });
    // Shown when the room ended under us (the server restarted, the media failed): the
    // kernel may be gone with the old server, so the page fetches a new token itself.
    this.rejoinButton = element('button', { class: 'jv-rejoin', type: 'button', hidden: '', text: 'Rejoin' });
    this.rejoinButton.onclick = () => this.rejoin();
    this.unlockButton = element('button', { class: 'jv-audio-unlock', type: 'button', hidden: '', text: 'Click to enable audio' });
    this.unlockButton.onclick = () => this.unlockAudio();
    this.grid = element('div', { class: 'jv-grid' });
    this.audioBox = element('div', { class: 'jv-audio', hidden: '' });
    this.messageList = element('ol', { class: 'jv-messages' });
    this.chatInput = element('input', { class: 'jv-chat-input', type: 'text', placeholder: 'Message everyone', disabled: '' });
    const form = element('form', { class: 'jv-chat-form' }, [this.chatInput, element('button', { type: 'submit', text: 'Send' })]);
    const submit = () => {
      const text = this.chatInput.value.trim();
      if (text) { this.sendMessage(text); this.chatInput.value = ''; }
    };
    form.onsubmit = (event) => { event.preventDefault(); submit(); };
    // Keys typed here are the chat's, not JupyterLab's shortcuts (Enter would edit
    // the cell, "d d" delete it): Lumino skips elements with this attribute.
    form.setAttribute('data-lm-suppress-shortcuts', 'true');
    this.chatInput.addEventListener('keydown', (event) => {
      event.stopPropagation();
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) { event.preventDefault(); submit(); }
    });
    const chat = element('div', { class: 'jv-chat' }, [this.messageList, form]);
    this.classroom = new ClassroomPanel(this);
    const bar = element('div', { class: 'jv-bar' }, [
      this.stateBadge, this.transportBadge, this.title, this.classroom.lockBadge, this.classroom.countdown, element('span', { class: 'jv-spacer' }),
      this.classroom.reactions, this.classroom.handButton, this.micButton, this.camButton, this.screenButton, this.leaveButton,
    ]);
    this.container = element('div', { class: 'jv-room' }, [
      bar, this.errorBox, this.rejoinButton, this.classroom.node, this.unlockButton, element('div', { class: 'jv-body' }, [this.grid, chat]), this.audioBox,
    ]);
    this.localTile = this.tile('local', this.model.get('identity') || 'you', true);
    this.root.append(this.container);
  }

  tile(sid, identity, local = false) {
    const media = element('div', { class: 'jv-media' });
    const tracks = element('span', { class: 'jv-tracks' });
    const label = element('span', { class: 'jv-name', text: local ? `${identity} (you)` : identity });
    const node = element('div', { class: local ? 'jv-tile jv-local' : 'jv-tile', 'data-sid': sid, 'data-identity': identity }, [
      media, element('div', { class: 'jv-label' }, [label, tracks]),
    ]);
    this.grid.append(node);
    return { node, media, tracks, label };
  }

  setState(state) {
    this.stateBadge.textContent = state;
    this.stateBadge.setAttribute('data-state', state);
    const live = state === 'connected' || state === 'reconnecting';
    for (const button of [this.micButton, this.camButton, this.screenButton, this.leaveButton]) { button.disabled = !live; }
    this.screenButton.disabled = !live || !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
    if (live) { this.chatInput.removeAttribute('disabled'); } else { this.chatInput.setAttribute('disabled', ''); }
    this.save({ state });
  }

  showError(error) {
    const info = describeError(error);
    this.errorBox.textContent = '';
    this.errorBox.append(
      element('strong', { text: info.code ? `Error ${info.code}` : info.name }),
      ' ', info.message,
      info.remedy ? element('div', { class: 'jv-remedy', text: info.remedy }) : '',
    );
    this.errorBox.removeAttribute('hidden');
    this.save({ error: info });
    return info;
  }

  save(values) {
    try {
      for (const [name, value] of Object.entries(values)) { this.model.set(name, value); }
      this.model.save_changes();
    } catch (_) {
      // The widget was closed in the kernel: nothing left to tell.
    }
  }

  // ------------------------------------------------------------------ joining

  async start() {
    this.setState('connecting');
    let grant;
    try {
      const query = new URLSearchParams({ room: this.model.get('room') });
      if (this.model.get('identity')) { query.set('identity', this.model.get('identity')); }
      if (this.model.get('type')) { query.set('type', this.model.get('type')); }
      grant = await request(this.base, `video/token?${query}`);
    } catch (error) {
      this.showError(error);
      this.setState('disconnected');
      this.offerRejoin();
      return;
    }
    if (this.left) { return; }
    this.localTile.label.textContent = `${grant.identity} (you)`;
    this.localTile.node.setAttribute('data-identity', grant.identity);
    this.save({ identity: grant.identity });
    await this.acquireMedia();
    if (this.left) { this.stopLocalTracks(); return; }
    this.dataTrack = new Video.LocalDataTrack({ name: 'chat' });
    this.grant = grant;
    // The media socket is the SFU's: in a Go or Peer-to-Peer room media goes between the
    // participants' own peer connections, and a lone participant has none to watch.
    const mesh = ['go', 'peer-to-peer'].includes(grant.room_type);
    this.mesh = mesh;
    const requested = mesh ? 'webrtc' : this.model.get('media_transport') || grant.media_transport || 'auto';
    const transport = requested === 'websocket' && webSocketMediaSupported() ? 'websocket' : 'webrtc';
    await this.connect(transport, requested === 'auto');
  }

  /** Join over ``transport`` ("webrtc" or "websocket"); ``fallback``: switch to the
   *  media socket if ICE does not connect. */
  async connect(transport, fallback) {
    const grant = this.grant;
    let room;
    try {
      room = await Video.connect(grant.token, {
        name: grant.room,
        // Absolute when the token came from a hub's video service, through a relay.
        wsServer: grant.ws_server || signalingUrl(this.base),
        iceServers: grant.ice_servers || [],
        insights: false,
        dominantSpeaker: true,
        tracks: [...this.localTracks, this.dataTrack],
        // Twilio's recommended group-room options (docs/quality.md); simulcast only
        // where Chrome's SSRC simulcast reaches the SFU (not through the media socket).
        ...qualityOptions(this.model.get('layout'), transport),
        // The media socket is where the room is: the hub's service when a relay answered.
        ...(transport === 'websocket' ? { RTCPeerConnection: grant.media_server
          ? WebSocketPeerConnection.forMediaUrl(grant.media_server)
          : WebSocketPeerConnection.forServer(this.base) } : {}),
      });
    } catch (error) {
      if (fallback && transport === 'webrtc' && webSocketMediaSupported()) {
        return this.connect('websocket', false);
      }
      this.stopLocalTracks();
      this.showError(error);
      this.setState('disconnected');
      this.offerRejoin();
      return;
    }
    if (this.left) { room.disconnect(); return; }
    this.transport = transport;
    this.transportBadge.textContent = transport === 'websocket' ? 'WebSocket' : 'WebRTC';
    this.transportBadge.removeAttribute('hidden');
    this.save({ transport });
    this.joined(room);
    if (fallback && transport === 'webrtc' && webSocketMediaSupported()) { this.watchIce(room); }
  }

  /** Rejoin over the media socket (no page reload) when ICE does not connect within
   *  ICE_TIMEOUT_MS, or fails later and stays down that long. */
  watchIce(room) {
    // twilio-video keeps its peer connections to itself: its PeerConnectionManager
    // (lib/signaling/v2/peerconnectionmanager.js) says their ICE state and its changes.
    const manager = room._signaling && room._signaling._peerConnectionManager;
    if (!manager || !('iceConnectionState' in manager)) { return; }
    let timer = null;
    const connected = () => ['connected', 'completed'].includes(manager.iceConnectionState);
    const check = () => {
      if (this.room !== room) { return; }
      if (connected()) { clearTimeout(timer); timer = null; return; }
      if (!timer) { timer = setTimeout(() => { if (this.room === room && !connected()) { this.switchTransport(room); } }, ICE_TIMEOUT_MS); }
    };
    manager.on('iceConnectionStateChanged', check);
    check();
  }

  async switchTransport(room) {
    this.room = null; // its events are the old room's from now on
    this.setState('reconnecting');
    room.disconnect();
    for (const sid of Array.from(this.tiles.keys())) {
      const participant = room.participants.get(sid);
      if (participant) { this.removeParticipant(participant); }
    }
    await this.connect('websocket', false);
  }

  async acquireMedia() {
    const audio = this.model.get('audio');
    const video = this.model.get('video');
    if (!audio && !video) { return; }
    const device = (id) => (id ? { deviceId: { exact: id } } : {});
    try {
      this.localTracks = await Video.createLocalTracks({
        audio: audio ? { ...device(this.model.get('audio_device')) } : false,
        video: video ? { width: 640, height: 480, ...device(this.model.get('video_device')) } : false,
      });
    } catch (error) {
      // Join anyway, to see, hear and chat; the error says how to get media back.
      if (!isMediaError(error) && !(error instanceof TypeError)) { throw error; }
      this.showError(error);
      this.localTracks = [];
    }
    for (const track of this.localTracks) {
      if (track.kind === 'video') { this.localTile.media.append(track.attach()); }
    }
  }

  joined(room) {
    this.room = room;
    // A room left for another transport (switchTransport) says nothing any more.
    const on = (name, listener) => room.on(name, (...args) => { if (this.room === room) { listener(...args); } });
    this.title.textContent = `${room.name}`;
    this.localTile.node.setAttribute('data-sid', room.localParticipant.sid);
    room.participants.forEach((participant) => this.addParticipant(participant));
    on('participantConnected', (participant) => { this.addParticipant(participant); this.sync(); });
    on('participantDisconnected', (participant) => this.removeParticipant(participant));
    on('trackSubscribed', (track, publication, participant) => this.attach(track, participant));
    on('trackUnsubscribed', (track, publication, participant) => this.detach(track, publication, participant));
    for (const name of ['trackPublished', 'trackUnpublished', 'trackEnabled', 'trackDisabled']) {
      on(name, (_, participant) => { this.renderTracks(participant); this.sync(); });
    }
    on('trackSubscriptionFailed', (error, _, participant) => { this.showError(error); this.renderTracks(participant); });
    on('trackMessage', (data, track, participant) => this.received(data, participant));
    on('dominantSpeakerChanged', (participant) => this.dominant(participant));
    on('trackSwitchedOff', (track, publication, participant) => this.switched(track, participant, true));
    on('trackSwitchedOn', (track, publication, participant) => this.switched(track, participant, false));
    const level = (participant) => this.level(participant);
    on('participantConnected', (participant) => participant.on('networkQualityLevelChanged', () => level(participant)));
    room.participants.forEach((participant) => participant.on('networkQualityLevelChanged', () => level(participant)));
    room.localParticipant.on('networkQualityLevelChanged', () => level(room.localParticipant));
    on('reconnecting', (error) => { this.setState('reconnecting'); if (error) { this.showError(error); } });
    on('reconnected', () => { this.errorBox.setAttribute('hidden', ''); this.save({ error: null }); this.setState('connected'); });
    on('disconnected', (_, error) => this.disconnected(error));
    this.save({ room_sid: room.sid, participant_sid: room.localParticipant.sid });
    this.sync();
    this.setState('connected');
    this.classroom.open(room, this.grant.token);
  }

  /** A moderator moved this participant (breakout, recall, visit): leave this room
   *  and join ``name`` with the token the server sent, keeping the local tracks. */
  moveTo(name, token, reason) {
    // One after another, in the order sent (a recall right after a breakout).
    this.moving = (this.moving || Promise.resolve()).then(() => this.move(name, token, reason));
    return this.moving;
  }

  async move(name, token, reason) {
    if (this.left) { return; }
    const room = this.room;
    this.grant = { ...this.grant, token, room: name };
    this.room = null; // its events are the old room's from now on
    this.setState('reconnecting');
    if (room) {
      room.disconnect();
      for (const sid of Array.from(this.tiles.keys())) {
        const participant = room.participants.get(sid);
        if (participant) { this.removeParticipant(participant); }
      }
    }
    this.messages = []; // each room's chat is its own; its history comes on the channel
    this.messageList.textContent = '';
    this.classroom.say(reason === 'recall' ? `Back in ${name}` : `Moved to ${name}`, 'move');
    await this.connect(this.transport || 'webrtc', false);
  }

  /** Mic or camera held off by a moderator: its button says so and does nothing. */
  holdButton(kind, held) {
    const button = kind === 'audio' ? this.micButton : this.camButton;
    if (held) {
      this.setEnabled(kind, false);
      button.setAttribute('data-held', 'true');
      button.title = 'Muted by the teacher';
      button.disabled = true;
    } else if (button.getAttribute('data-held')) {
      button.removeAttribute('data-held');
      button.title = '';
      button.disabled = !this.room;
    }
  }

  /** A participant's reaction floats over their tile for a few seconds. */
  showReaction(identity, emoji) {
    const local = this.room && this.room.localParticipant.identity === identity;
    const tile = local ? this.localTile : [...this.tiles.values()].find((t) => t.node.getAttribute('data-identity') === identity);
    if (!tile || !emoji) { return; }
    const badge = element('span', { class: 'jv-reaction', text: emoji });
    tile.node.append(badge);
    setTimeout(() => badge.remove(), 4000);
  }

  /** Everyone sees the spotlit participant large. */
  spotlight(identity) {
    this.grid.classList.toggle('jv-has-spotlight', Boolean(identity));
    for (const tile of [this.localTile, ...this.tiles.values()]) {
      tile.node.classList.toggle('jv-spotlight', Boolean(identity) && tile.node.getAttribute('data-identity') === identity);
    }
  }

  disconnected(error) {
    this.classroom.close();
    this.stopLocalTracks();
    if (error) { this.showError(error); }
    const room = this.room;
    this.room = null;
    this.setState('disconnected');
    if (room) {
      for (const sid of Array.from(this.tiles.keys())) {
        const participant = room.participants.get(sid);
        if (participant) { this.removeParticipant(participant); }
      }
    }
    // Not after the room completed, or another page joined as this identity (53205:
    // rejoining would push that one out in turn).
    if (error && ![53118, 53205].includes(error.code)) { this.offerRejoin(); }
  }

  /** The room ended with an error, not by leaving: a button joins again. */
  offerRejoin() {
    if (!this.left) { this.rejoinButton.removeAttribute('hidden'); }
  }

  /** Join the same room again from the start: a new token, new local tracks. */
  async rejoin() {
    this.rejoinButton.setAttribute('hidden', '');
    this.errorBox.setAttribute('hidden', '');
    this.save({ error: null });
    for (const tile of this.tiles.values()) { tile.node.remove(); }
    this.tiles.clear();
    this.messages = [];
    this.messageList.textContent = '';
    await this.start();
  }

  // ------------------------------------------------------------------ participants and tracks

  addParticipant(participant) {
    if (this.tiles.has(participant.sid)) { return; }
    this.tiles.set(participant.sid, this.tile(participant.sid, participant.identity));
    participant.tracks.forEach((publication) => { if (publication.track) { this.attach(publication.track, participant); } });
    this.renderTracks(participant);
    this.classroom.refreshTiles();
  }

  removeParticipant(participant) {
    const tile = this.tiles.get(participant.sid);
    if (tile) { tile.node.remove(); this.tiles.delete(participant.sid); }
    participant.tracks.forEach((publication) => {
      if (publication.track && publication.track.detach) { publication.track.detach().forEach((node) => node.remove()); }
    });
    this.sync();
  }

  attach(track, participant) {
    const tile = this.tiles.get(participant.sid);
    if (!tile) { return; }
    if (track.kind === 'video') {
      const video = track.attach();
      video.classList.add('jv-video');
      video.setAttribute('data-track-sid', track.sid);
      video.setAttribute('data-track-name', track.name);
      video.muted = true;
      tile.media.querySelectorAll('.jv-placeholder').forEach((node) => node.remove());
      tile.media.append(video);
    } else if (track.kind === 'audio') {
      const audio = track.attach();
      audio.setAttribute('data-track-sid', track.sid);
      this.audioBox.append(audio);
      const playing = audio.play();
      if (playing && playing.catch) {
        playing.catch((error) => { if (error.name === 'NotAllowedError') { this.unlockButton.removeAttribute('hidden'); } });
      }
    }
    this.renderTracks(participant);
    this.sync();
  }

  detach(track, publication, participant) {
    if (track.detach) { track.detach().forEach((node) => node.remove()); }
    const tile = this.tiles.get(participant.sid);
    if (tile && track.kind === 'video' && !tile.media.querySelector('video')) {
      tile.media.append(element('div', { class: 'jv-placeholder', text: this.excluded.has(publication.trackSid) ? 'video unsubscribed' : 'no video' }));
    }
    this.renderTracks(participant);
    this.sync();
  }

  /** The per-track subscribe toggles and muted marks under a participant's name. */
  renderTracks(participant) {
    const tile = this.tiles.get(participant.sid);
    if (!tile) { return; }
    tile.tracks.textContent = '';
    participant.tracks.forEach((publication) => {
      if (publication.kind === 'data') { return; }
      const subscribed = publication.isSubscribed;
      const button = element('button', {
        type: 'button',
        class: 'jv-sub',
        'data-track-sid': publication.trackSid,
        'data-kind': publication.kind,
        'data-subscribed': String(subscribed),
        'data-enabled': String(publication.isTrackEnabled),
        title: subscribed ? `Unsubscribe from ${publication.trackName}` : `Subscribe to ${publication.trackName}`,
        text: `${publication.kind}${publication.isTrackEnabled ? '' : ' (off)'}`,
      });
      button.onclick = () => (this.excluded.has(publication.trackSid) ? this.subscribe(publication.trackSid) : this.unsubscribe(publication.trackSid));
      if (this.mesh) { // no SubscribeRules: each peer connection carries all of its sender's tracks
        button.disabled = true;
        button.title = `${publication.trackName}: every track is received in a ${this.grant.room_type} room`;
      }
      tile.tracks.append(button);
    });
  }

  dominant(participant) {
    for (const tile of [this.localTile, ...this.tiles.values()]) { tile.node.classList.remove('jv-dominant'); }
    const tile = participant && this.tiles.get(participant.sid);
    if (tile) { tile.node.classList.add('jv-dominant'); }
    this.save({ dominant_speaker: participant ? participant.identity : null });
  }

  /** A switched-off video (the SFU sends none: hidden, or bandwidth) is marked so. */
  switched(track, participant, off) {
    const tile = this.tiles.get(participant.sid);
    if (tile && track.kind === 'video') { tile.node.classList.toggle('jv-switched-off', off); }
    this.sync();
  }

  /** A participant's Network Quality level (0-5) on its tile. */
  level(participant) {
    const tile = participant === this.room.localParticipant ? this.localTile : this.tiles.get(participant.sid);
    if (tile) { tile.node.setAttribute('data-network-quality', String(participant.networkQualityLevel)); }
    this.sync();
  }

  /** ``participants`` for Python: every remote participant and their tracks. */
  sync() {
    if (!this.room) { return; }
    const participants = [...this.room.participants.values()].map((participant) => ({
      sid: participant.sid,
      identity: participant.identity,
      state: participant.state,
      tracks: [...participant.tracks.values()].map((publication) => ({
        sid: publication.trackSid,
        kind: publication.kind,
        name: publication.trackName,
        enabled: publication.isTrackEnabled,
        subscribed: publication.isSubscribed,
        switched_off: publication.track && 'isSwitchedOff' in publication.track ? publication.track.isSwitchedOff : null,
      })),
      network_quality_level: participant.networkQualityLevel,
    }));
    this.save({ participants });
  }

  // ------------------------------------------------------------------ subscriptions

  async subscribe(trackSid) {
    this.excluded.delete(trackSid);
    await this.applyRules();
  }

  async unsubscribe(trackSid) {
    this.excluded.add(trackSid);
    await this.applyRules();
  }

  /** Everything but the excluded tracks, through the REST SubscribeRules of this participant. */
  async applyRules() {
    if (!this.room) { return; }
    const rules = [{ type: 'include', all: true }, ...[...this.excluded].map((track) => ({ type: 'exclude', track }))];
    const path = `video/v1/Rooms/${this.room.sid}/Participants/${this.room.localParticipant.sid}/SubscribeRules`;
    try {
      await request(this.base, path, { method: 'POST', form: { Rules: JSON.stringify(rules) } });
    } catch (error) {
      this.showError(error);
    }
  }

  // ------------------------------------------------------------------ local media

  toggle(kind) {
    const tracks = this.localTracks.filter((track) => track.kind === kind);
    if (!tracks.length) { return; }
    this.setEnabled(kind, !tracks[0].isEnabled);
  }

  setEnabled(kind, enabled) {
    for (const track of this.localTracks) {
      if (track.kind === kind) { if (enabled) { track.enable(); } else { track.disable(); } }
    }
    if (kind === 'audio') { this.micButton.textContent = enabled ? 'Mute' : 'Unmute'; }
    if (kind === 'video') { this.camButton.textContent = enabled ? 'Stop video' : 'Start video'; }
    (kind === 'audio' ? this.micButton : this.camButton).classList.toggle('jv-off', !enabled);
  }

  async toggleScreen() {
    if (!this.room) { return; }
    if (this.screenTrack) { this.stopScreen(); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true });
    } catch (error) {
      if (error.name !== 'NotAllowedError') { this.showError(error); }
      return;
    }
    const mediaStreamTrack = stream.getVideoTracks()[0];
    this.screenTrack = new Video.LocalVideoTrack(mediaStreamTrack, { name: 'screen' });
    mediaStreamTrack.addEventListener('ended', () => this.stopScreen());
    await this.room.localParticipant.publishTrack(this.screenTrack);
    this.screenButton.textContent = 'Stop sharing';
  }

  stopScreen() {
    if (!this.screenTrack) { return; }
    if (this.room) { this.room.localParticipant.unpublishTrack(this.screenTrack); }
    this.screenTrack.stop();
    this.screenTrack = null;
    this.screenButton.textContent = 'Share screen';
  }

  stopLocalTracks() {
    this.stopScreen();
    for (const track of this.localTracks) { track.stop(); track.detach().forEach((node) => node.remove()); }
    this.localTracks = [];
  }

  unlockAudio() {
    this.audioBox.querySelectorAll('audio').forEach((audio) => audio.play().catch(() => {}));
    this.unlockButton.setAttribute('hidden', '');
  }

  // ------------------------------------------------------------------ chat

  sendMessage(text) {
    if (!this.room || !this.dataTrack) { return; }
    this.dataTrack.send(text);
    this.addMessage(this.room.localParticipant, text);
    // Kept in the room's history; everyone in the room had it on the data track.
    this.classroom.act('chat', { text, relay: false });
  }

  /** The room's chat before this participant joined (the classroom channel's). */
  showHistory(messages) {
    if (this.messages.length) { return; }
    for (const message of messages) { this.addMessage(message, message.text, new Date(message.time), true); }
  }

  /** A message sent through the classroom (a kernel's Classroom or seat). */
  addRelayed(message) {
    this.addMessage(message, message.text, new Date(message.time));
  }

  received(data, participant) {
    const text = typeof data === 'string' ? data : decoder.decode(data);
    this.addMessage(participant, text);
  }

  addMessage(participant, text, now = new Date(), history = false) {
    const message = { sid: participant.sid, identity: participant.identity, text, time: now.toISOString() };
    this.messages.push(message);
    const local = this.room && participant === this.room.localParticipant;
    const cls = `jv-message${local ? ' jv-own' : ''}${history ? ' jv-history' : ''}`;
    this.messageList.append(element('li', { class: cls }, [
      element('span', { class: 'jv-time', text: clock(now) }),
      element('span', { class: 'jv-who', text: participant.identity }),
      element('span', { class: 'jv-text', text }),
    ]));
    this.messageList.scrollTop = this.messageList.scrollHeight;
    this.save({ messages: [...this.messages] });
  }

  // ------------------------------------------------------------------ Python's commands

  command(message) {
    if (!message || typeof message !== 'object') { return; }
    switch (message.command) {
      case 'send_message': this.sendMessage(String(message.text)); break;
      case 'subscribe': this.subscribe(message.track_sid); break;
      case 'unsubscribe': this.unsubscribe(message.track_sid); break;
      case 'mute': this.setEnabled(message.kind, false); break;
      case 'unmute': this.setEnabled(message.kind, true); break;
      case 'leave': this.leave(); break;
      case 'raise_hand': this.classroom.act('raise_hand'); break;
      case 'lower_hand': this.classroom.act('lower_hand', message.identity ? { identity: message.identity } : {}); break;
      case 'classroom': this.classroom.act(message.action, message.args || {}); break;
      default: break;
    }
  }

  leave() {
    this.left = true;
    this.classroom.close();
    if (this.room) { this.room.disconnect(); } else { this.stopLocalTracks(); }
  }

  dispose() {
    this.model.off('msg:custom', this.onCommand);
    window.removeEventListener('beforeunload', this.onUnload);
    window.removeEventListener('pagehide', this.onUnload);
  }
}
