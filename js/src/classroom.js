// The classroom parts of RoomWidget: its channel beside signaling
// (video/classroom/channel), raised hands, "muted by the teacher", spotlight,
// the chat history, breakout moves without a page reload, and the moderator's
// controls. twilio-video.js knows nothing of it.

const STATS_INTERVAL_MS = 2000;
const REACTIONS = { thumbs_up: '\u{1F44D}', clap: '\u{1F44F}', laugh: '\u{1F602}', surprised: '\u{1F62E}', heart: '\u{2764}\u{FE0F}', celebrate: '\u{1F389}' };

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') { node.textContent = value; } else { node.setAttribute(name, value); }
  }
  for (const child of children) { node.append(child); }
  return node;
}

/** Where the room is: beside the signaling the token reply named (a hub's video
 *  service, through a relay), else on the page's server. */
function channelUrl(base, wsServer) {
  if (wsServer && /video\/signaling\/?$/.test(wsServer)) {
    return wsServer.replace(/video\/signaling\/?$/, 'video/classroom/channel');
  }
  const url = new URL('video/classroom/channel', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

function waited(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

export class ClassroomPanel {
  /** ``view``: the RoomView (js/src/room.js) this panel belongs to. */
  constructor(view) {
    this.view = view;
    this.socket = null;
    this.state = null;
    this.nextId = 0;
    this.handRaised = false;
    this.lastStats = new Map();
    this.build();
  }

  build() {
    this.handButton = element('button', { class: 'jv-hand', type: 'button', text: 'Raise hand', disabled: '' });
    this.handButton.onclick = () => this.act(this.handRaised ? 'lower_hand' : 'raise_hand');
    this.notice = element('div', { class: 'jv-notice', hidden: '' });
    this.lockBadge = element('span', { class: 'jv-locked', hidden: '', text: 'locked' });
    this.countdown = element('span', { class: 'jv-countdown', hidden: '' });
    this.hands = element('ol', { class: 'jv-hands' });
    this.handsBox = element('div', { class: 'jv-hands-box', hidden: '' }, [element('strong', { text: 'Raised hands' }), this.hands]);
    this.controls = element('div', { class: 'jv-teacher', hidden: '' });
    // One "React" button opens the palette (kept closed: the bar stays short).
    const palette = element('span', { class: 'jv-palette', hidden: '' });
    for (const [name, emoji] of Object.entries(REACTIONS)) {
      const button = element('button', { type: 'button', class: 'jv-react', 'data-reaction': name, title: name.replace('_', ' '), text: emoji });
      button.onclick = () => { this.act('react', { reaction: name }); palette.setAttribute('hidden', ''); };
      palette.append(button);
    }
    const open = element('button', { type: 'button', class: 'jv-react-open', text: 'React' });
    open.onclick = () => palette.toggleAttribute('hidden');
    this.reactions = element('span', { class: 'jv-reactions' }, [open, palette]);
    this.node = element('div', { class: 'jv-classroom' }, [this.notice, this.handsBox, this.controls]);
  }

  /** Open the channel for the room just joined (again after each move). */
  open(room, token, again = false) {
    this.close();
    if (!again) { this.retries = 0; }
    const socket = new WebSocket(channelUrl(this.view.base, this.view.grant && this.view.grant.ws_server));
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: 'hello', token, room: room.name }));
    socket.onmessage = (event) => { if (this.socket === socket) { this.take(JSON.parse(event.data)); } };
    // Dropped while still in this room (a server restart, a proxy's timeout): again.
    socket.onclose = () => {
      if (this.socket === socket && this.view.room === room && this.retries < 5) {
        this.socket = null;
        this.retries += 1;
        setTimeout(() => { if (!this.socket && this.view.room === room) { this.open(room, token, true); } }, 2000);
      }
    };
    this.handButton.removeAttribute('disabled');
    const report = async () => {
      if (this.socket !== socket) { return; }
      await this.reportStats(room).catch(() => {}); // one report at a time: getStats can be slow
      this.statsTimer = setTimeout(report, STATS_INTERVAL_MS);
    };
    this.statsTimer = setTimeout(report, STATS_INTERVAL_MS);
  }

  close() {
    clearTimeout(this.statsTimer);
    clearInterval(this.waitTimer);
    if (this.socket) { this.socket.onmessage = null; this.socket.close(); this.socket = null; }
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) { this.socket.send(JSON.stringify(message)); }
  }

  act(action, args = {}) {
    this.nextId += 1;
    this.send({ type: 'action', id: this.nextId, action, args });
  }

  take(message) {
    switch (message.type) {
      case 'state': this.retries = 0; this.render(message); break;
      case 'chat_history': this.view.showHistory(message.messages); break;
      case 'chat': this.view.addRelayed(message.message); break;
      case 'muted':
        this.view.setEnabled(message.kind, false);
        this.say(message.text, 'muted');
        break;
      case 'unmute_allowed': this.say(`The teacher lets you unmute your ${message.kind === 'audio' ? 'microphone' : 'camera'}`, 'info'); break;
      case 'removed': this.say(message.text, 'removed'); break;
      case 'broadcast': this.say(`${message.from} to everyone: ${message.text}`, 'broadcast'); break;
      case 'move': this.view.moveTo(message.room, message.token, message.reason); break;
      case 'reaction': this.view.showReaction(message.identity, REACTIONS[message.reaction] || ''); break;
      case 'result': if (message.error) { this.say(message.error.message, 'error'); } break;
      case 'error': this.say(message.error ? message.error.message : String(message.message), 'error'); break;
      default: break;
    }
  }

  say(text, kind) {
    this.notice.textContent = text;
    this.notice.setAttribute('data-kind', kind);
    this.notice.removeAttribute('hidden');
  }

  render(state) {
    this.state = state;
    const me = state.you || {};
    this.handRaised = state.hands.some((hand) => hand.identity === me.identity);
    this.handButton.textContent = this.handRaised ? 'Lower hand' : 'Raise hand';
    this.handButton.classList.toggle('jv-raised', this.handRaised);
    this.lockBadge.toggleAttribute('hidden', !state.locked);
    for (const kind of ['audio', 'video']) { this.view.holdButton(kind, (me.held || []).includes(kind)); }
    this.view.spotlight(state.spotlight);
    this.hands.textContent = '';
    this.receivedAt = performance.now();
    this.endsAt = state.breakouts && state.breakouts.ends_at ? state.breakouts.ends_at * 1000 : null;
    clearInterval(this.waitTimer);
    if (state.hands.length || this.endsAt) { this.waitTimer = setInterval(() => this.tickWaits(), 1000); }
    this.tickCountdown();
    for (const hand of state.hands) {
      const item = element('li', { class: 'jv-hand-item', 'data-identity': hand.identity }, [
        element('span', { class: 'jv-who', text: hand.identity }),
        element('span', { class: 'jv-wait', 'data-waited': String(hand.waiting_seconds), text: waited(hand.waiting_seconds) }),
      ]);
      if (me.moderator) {
        const lower = element('button', { type: 'button', class: 'jv-lower', text: 'Lower' });
        lower.onclick = () => this.act('lower_hand', { identity: hand.identity });
        item.append(lower);
      }
      this.hands.append(item);
    }
    this.handsBox.toggleAttribute('hidden', !state.hands.length);
    this.renderControls(state, me);
    this.view.save({ classroom: state });
  }

  /** A tile came after the last state (its participant's signaling came later): give
   *  it the moderator's buttons and the spotlight too. */
  refreshTiles() {
    if (!this.state) { return; }
    this.view.spotlight(this.state.spotlight);
    this.renderControls(this.state, this.state.you || {});
  }

  /** How long each hand has waited: the server's count when it sent the state, and on. */
  tickWaits() {
    this.tickCountdown();
    const since = (performance.now() - this.receivedAt) / 1000;
    for (const node of this.hands.querySelectorAll('.jv-wait')) {
      node.textContent = waited(Number(node.getAttribute('data-waited')) + since);
    }
  }

  /** The breakouts' countdown (the server's clock; the end recalls everyone). */
  tickCountdown() {
    this.countdown.toggleAttribute('hidden', !this.endsAt);
    if (this.endsAt) { this.countdown.textContent = `breakouts end in ${waited((this.endsAt - Date.now()) / 1000)}`; }
  }

  renderControls(state, me) {
    this.controls.textContent = '';
    this.controls.toggleAttribute('hidden', !me.moderator);
    if (!me.moderator) { return; }
    const button = (text, cls, onclick) => {
      const node = element('button', { type: 'button', class: cls, text });
      node.onclick = onclick;
      return node;
    };
    this.controls.append(
      element('strong', { text: 'Teacher' }),
      button(state.locked ? 'Unlock room' : 'Lock room', 'jv-lock', () => this.act(state.locked ? 'unlock' : 'lock')),
      button(state.mute_on_join ? 'Join muted: on' : 'Join muted: off', 'jv-mute-on-join', () => this.act('settings', { mute_on_join: !state.mute_on_join })),
      button('Lower all hands', 'jv-lower-all', () => this.act('lower_all_hands')),
      state.breakouts ? button('Recall everyone', 'jv-recall', () => this.act('recall'))
        : button('Breakouts (2)', 'jv-breakout', () => this.act('breakout', { rooms: 2 })),
    );
    // A moderator visits any breakout, and comes back.
    if (state.breakouts) {
      for (const name of [...state.breakouts.rooms, state.main_room]) {
        if (name !== state.room) {
          this.controls.append(button(name === state.main_room ? 'Back to main room' : `Visit ${name}`, 'jv-visit', () => this.act('visit', { room: name })));
        }
      }
    }
    // Per-participant moderation on each tile.
    for (const [sid, tile] of this.view.tiles) {
      const identity = tile.node.getAttribute('data-identity');
      let bar = tile.node.querySelector('.jv-moderate');
      if (!bar) { bar = element('span', { class: 'jv-moderate' }); tile.node.append(bar); }
      bar.textContent = '';
      bar.append(
        button('Mute', 'jv-mod-mute', () => this.act('mute', { identity, kind: 'audio' })),
        button('Stop video', 'jv-mod-video', () => this.act('mute', { identity, kind: 'video' })),
        button(state.spotlight === identity ? 'Unspotlight' : 'Spotlight', 'jv-mod-spotlight', () => this.act('spotlight', { identity: state.spotlight === identity ? null : identity })),
        button('Remove', 'jv-mod-remove', () => this.act('remove', { identity })),
      );
      bar.setAttribute('data-sid', sid);
    }
  }

  /** The browser's own stats for the room monitor: per track, rates since the last report. */
  async reportStats(room) {
    if (!this.socket || room !== this.view.room) { return; }
    let reports;
    try { reports = await room.getStats(); } catch (_) { return; }
    const now = performance.now();
    const samples = [];
    // Sent: lost as the SFU's receiver reports say (of what was sent); received:
    // lost of what was expected (received + lost).
    const rate = (key, bytes, packets, lost, sending) => {
      const last = this.lastStats.get(key);
      this.lastStats.set(key, { at: now, bytes, packets, lost });
      if (!last || now <= last.at) { return {}; }
      const dp = packets - last.packets;
      const dl = Math.max(0, lost - last.lost);
      const expected = sending ? dp : dp + dl;
      return {
        bitrate_kbps: ((bytes - last.bytes) * 8) / (now - last.at),
        packet_loss: expected > 0 ? Math.min(1, dl / expected) : 0,
      };
    };
    for (const report of reports) {
      for (const [kind, list] of [['audio', report.localAudioTrackStats], ['video', report.localVideoTrackStats]]) {
        for (const s of list || []) {
          samples.push({ direction: 'send', kind, source: 'browser', fps: s.frameRate ?? null, jitter_ms: s.jitter ?? null,
            ...rate(`send:${s.trackSid}:${s.ssrc}`, s.bytesSent || 0, s.packetsSent || 0, s.packetsLost || 0, true) });
        }
      }
      for (const [kind, list] of [['audio', report.remoteAudioTrackStats], ['video', report.remoteVideoTrackStats]]) {
        for (const s of list || []) {
          samples.push({ direction: 'receive', kind, source: 'browser', fps: s.frameRate ?? null, jitter_ms: s.jitter ?? null,
            ...rate(`recv:${s.trackSid}:${s.ssrc}`, s.bytesReceived || 0, s.packetsReceived || 0, s.packetsLost || 0, false) });
        }
      }
    }
    const speaker = room.dominantSpeaker; // the SFU's active_speaker, as this page was told
    if (samples.length || speaker) { this.send({ type: 'stats', samples, ...(speaker ? { dominant_speaker: speaker.identity } : {}) }); }
  }
}
