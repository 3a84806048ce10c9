/*
 * Entry point of the lab build: start a JupyterLab application with the plugins of every
 * @jupyterlab/* extension package in package.json (build/extensions.js, generated from it by
 * webpack.config.js) and our vega-lite v5 renderer (src/vegalite5.js).
 */
import { PageConfig } from '@jupyterlab/coreutils';

// chunks and assets load from the server's static URL for this app (set before any import() below)
// eslint-disable-next-line no-undef
__webpack_public_path__ = PageConfig.getOption('fullStaticUrl') + '/';

// JupyterLab's news feed asks to fetch announcements from the internet: this build is for local,
// often offline use (and tests), so it is left out
const LEFT_OUT = new Set(['@jupyterlab/apputils-extension:announcements']);

// plugin modules export one plugin or an array of them, as an ES module default or CommonJS
function pluginsOf(mod) {
  const exported = Object.prototype.hasOwnProperty.call(mod, '__esModule') ? mod.default : mod;
  return Array.isArray(exported) ? exported : [exported];
}

window.addEventListener('load', async () => {
  const [{ JupyterLab }, generated] = await Promise.all([
    import('@jupyterlab/application'),
    import('./build/extensions.js'),
    import('./build/style.js')
  ]);
  const mimeModules = await Promise.all([...generated.mimeExtensions(), import('./src/vegalite5.js')]);
  const lab = new JupyterLab({ mimeExtensions: mimeModules.flatMap(pluginsOf) });
  const plugins = (await Promise.all(generated.extensions())).flatMap(pluginsOf);
  lab.registerPlugins(plugins.filter(p => !LEFT_OUT.has(p.id)));
  await lab.start();
  await lab.restored;
  // for scripts and tests (JupyterLab's own UI-test tooling looks for the app under the same name),
  // and a marker that the shell and the restored layout are ready
  window.jupyterapp = lab;
  document.body.dataset.isLabReady = 'true';
});
