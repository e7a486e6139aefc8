// anywidget entry point of RoomWidget and PreviewWidget: one bundle, the
// Python class says which view it is through its ``_widget`` trait.
import { renderRoom } from './room.js';
import { renderPreview } from './preview.js';
import { renderMonitor } from './monitor.js';

export default {
  render({ model, el }) {
    const widget = model.get('_widget');
    if (widget === 'monitor') { return renderMonitor(model, el); }
    return widget === 'preview' ? renderPreview(model, el) : renderRoom(model, el);
  },
};
