/*
 * Draw vega-lite v5 outputs with JupyterLab's own vega renderer.
 *
 * Our chart outputs carry their spec under application/vnd.vegalite.v5+json (lib/display/chart.ts),
 * the type JupyterLab 4's vega5 extension registers. JupyterLab 3.6's (the one this build pins, as
 * Debian's jupyter_server 1.x needs the 3.x front end) registers only vega v5 and vega-lite v3/v4,
 * although its renderer, RenderedVega (vega-embed on vega-lite 5), draws v5 specs: register that
 * same renderer for the v5 type, at the extension's rank, so a chart is drawn as an interactive
 * vega view here as in JupyterLab 4 rather than falling back to its PNG.
 */
import { RenderedVega } from '@jupyterlab/vega5-extension';
import vega5 from '@jupyterlab/vega5-extension';

export const VEGALITE5_MIME_TYPE = 'application/vnd.vegalite.v5+json';

export default {
  id: 'integration-spaces:vegalite5-renderer',
  rendererFactory: {
    safe: true,
    mimeTypes: [VEGALITE5_MIME_TYPE],
    createRenderer: options => new RenderedVega(options)
  },
  rank: vega5.rank,
  dataType: 'json'
};
