// anywidget entry point of RoomWidget and PreviewWidget: one bundle, the
// Python class says which view it is through its ``_widget`` trait.
import { renderRoom } from './room.js';
import { renderPreview } from './preview.js';

export default {
  render({ model, el }) {
    return model.get('_widget') === 'preview' ? renderPreview(model, el) : renderRoom(model, el);
  },
};
