// PreviewWidget's view: camera preview and device choice before joining, and a
// microphone level meter ("test your microphone", seed 004: a level that stays
// at 0 while talking means another app holds the microphone).
import Video from 'twilio-video';
import css from './styles.css';
import { describeError } from './errors.js';

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') { node.textContent = value; } else { node.setAttribute(name, value); }
  }
  for (const child of children) { node.append(child); }
  return node;
}

function rootMeanSquare(samples) {
  let sum = 0;
  for (const sample of samples) { sum += sample * sample; }
  return Math.sqrt(sum / samples.length);
}

export function renderPreview(model, el) {
  const video = element('div', { class: 'jv-media' });
  const cameraSelect = element('select', { class: 'jv-camera' });
  const micSelect = element('select', { class: 'jv-microphone' });
  const meter = element('meter', { class: 'jv-level', min: '0', max: '10', value: '0' });
  const errorBox = element('div', { class: 'jv-error', hidden: '' });
  const status = element('span', { class: 'jv-state', 'data-state': 'connecting', text: 'starting camera' });
  el.append(element('style', { text: css }), element('div', { class: 'jv-room jv-preview' }, [
    element('div', { class: 'jv-bar' }, [status, element('span', { class: 'jv-title', text: 'Preview' })]),
    errorBox,
    element('div', { class: 'jv-tile jv-local' }, [video]),
    element('label', { text: 'Camera ' }, [cameraSelect]),
    element('label', { text: 'Microphone ' }, [micSelect]),
    element('label', { class: 'jv-meter', text: 'Level ' }, [meter]),
  ]));

  let videoTrack = null;
  let audioTrack = null;
  let audioContext = null;
  let frame = 0;
  let released = false;
  let lastLevel = -1;
  let lastSent = 0;

  const save = (values) => {
    try {
      for (const [name, value] of Object.entries(values)) { model.set(name, value); }
      model.save_changes();
    } catch (_) { /* closed in the kernel */ }
  };
  const fail = (error) => {
    const info = describeError(error);
    errorBox.textContent = `${info.code ? `Error ${info.code}` : info.name}: ${info.message} ${info.remedy}`;
    errorBox.removeAttribute('hidden');
    save({ error: info });
  };

  async function listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const fill = (select, kind, chosen) => {
      select.textContent = '';
      for (const device of devices.filter((d) => d.kind === kind)) {
        const option = element('option', { value: device.deviceId, text: device.label || kind });
        if (device.deviceId === chosen) { option.selected = true; }
        select.append(option);
      }
    };
    fill(cameraSelect, 'videoinput', model.get('video_device'));
    fill(micSelect, 'audioinput', model.get('audio_device'));
    save({
      devices: devices.filter((d) => d.kind !== 'audiooutput').map((d) => ({ kind: d.kind, id: d.deviceId, label: d.label })),
    });
  }

  async function startCamera() {
    if (videoTrack) { videoTrack.stop(); videoTrack.detach().forEach((node) => node.remove()); videoTrack = null; }
    const id = model.get('video_device');
    try {
      videoTrack = await Video.createLocalVideoTrack({ width: 640, height: 480, ...(id ? { deviceId: { exact: id } } : {}) });
    } catch (error) { fail(error); return; }
    if (released) { videoTrack.stop(); return; }
    video.append(videoTrack.attach());
    save({ video_device: videoTrack.mediaStreamTrack.getSettings().deviceId || id || null });
  }

  async function startMicrophone() {
    if (audioTrack) { audioTrack.stop(); audioTrack = null; }
    const id = model.get('audio_device');
    try {
      audioTrack = await Video.createLocalAudioTrack(id ? { deviceId: { exact: id } } : {});
    } catch (error) { fail(error); return; }
    if (released) { audioTrack.stop(); return; }
    save({ audio_device: audioTrack.mediaStreamTrack.getSettings().deviceId || id || null });
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) { return; }
    audioContext = audioContext || new Context();
    audioContext.resume().catch(() => {});
    const analyser = audioContext.createAnalyser();
    analyser.fftSize = 1024;
    analyser.smoothingTimeConstant = 0.5;
    audioContext.createMediaStreamSource(new MediaStream([audioTrack.mediaStreamTrack])).connect(analyser);
    const samples = new Uint8Array(analyser.frequencyBinCount);
    const track = audioTrack;
    const poll = () => {
      if (track !== audioTrack) { return; }
      analyser.getByteFrequencyData(samples);
      const rms = rootMeanSquare(samples);
      const level = Math.max(0, Math.min(10, Math.ceil((10 * (rms && Math.log2(rms))) / 8)));
      meter.value = level;
      const now = performance.now();
      if (level !== lastLevel && now - lastSent > 250) { // at most 4 updates a second to the kernel
        lastLevel = level;
        lastSent = now;
        save({ level });
      }
      frame = requestAnimationFrame(poll);
    };
    poll();
  }

  function release() {
    released = true;
    cancelAnimationFrame(frame);
    if (videoTrack) { videoTrack.stop(); videoTrack.detach().forEach((node) => node.remove()); videoTrack = null; }
    if (audioTrack) { audioTrack.stop(); audioTrack = null; }
    if (audioContext) { audioContext.close().catch(() => {}); audioContext = null; }
    status.textContent = 'released';
    status.setAttribute('data-state', 'disconnected');
  }

  cameraSelect.onchange = () => { save({ video_device: cameraSelect.value }); startCamera(); };
  micSelect.onchange = () => { save({ audio_device: micSelect.value }); startMicrophone(); };
  const onCommand = (message) => { if (message && message.command === 'release') { release(); } };
  model.on('msg:custom', onCommand);

  (async () => {
    if (!navigator.mediaDevices) { fail(new TypeError('navigator.mediaDevices is undefined')); return; }
    await Promise.all([startCamera(), startMicrophone()]);
    if (released) { return; }
    await listDevices().catch(fail);
    status.textContent = 'preview';
    status.setAttribute('data-state', 'connected');
  })();

  return () => { model.off('msg:custom', onCommand); release(); };
}
