"""
Serve this directory's JupyterLab build (build/, made by `npm run build` here) on Debian's
jupyter_server 1.23 + jupyterlab_server 2.16, the pattern of JupyterLab's standalone examples:
a LabServerApp subclass that points jupyterlab_server at the build's static files, settings schemas
and themes, with the page template in templates/.

    /usr/bin/python3 environment/jupyterlab/launch.py [jupyter_server options, e.g. --ip=127.0.0.1
        --port=8888 --ServerApp.root_dir=notebooks]

JupyterLab opens at /lab. Kernels come from jupyter_client's kernelspec search path: put the
repository's .jupyter on JUPYTER_PATH for the project kernel (scripts/lab.sh and the browser test
do). Authentication is jupyter_server's: a token (JUPYTER_TOKEN, or a random one printed at start).
User settings and workspaces go where JupyterLab keeps them (JUPYTER_CONFIG_DIR/lab/...), not here.

LaTeX in markdown cells is typeset by MathJax 2 (@jupyterlab/mathjax2-extension), which jupyterlab_server
would fetch from a CDN: we serve Debian's copy (libjs-mathjax, a dependency of jupyter-notebook, which
setup.sh installs) at /integration-spaces/mathjax/ instead, so equations render offline. IS_MATHJAX_DIR overrides where it is.
"""
import json
import os
import sys

from jupyter_core.paths import jupyter_config_dir
from jupyter_server.utils import url_path_join
from jupyterlab_server import LabServerApp
from tornado.web import StaticFileHandler
from traitlets import default

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build")
MATHJAX_URL_PATH = "integration-spaces/mathjax"


def _mathjax_dir():
    """A local MathJax 2 (the directory holding MathJax.js), or None."""
    for d in (os.environ.get("IS_MATHJAX_DIR"), "/usr/share/javascript/mathjax", "/usr/share/mathjax"):
        if d and os.path.isfile(os.path.join(d, "MathJax.js")):
            return d
    return None


def _lab_version():
    """The @jupyterlab/application version this build pins (shown in Help > About)."""
    with open(os.path.join(HERE, "package.json"), encoding="utf-8") as f:
        return json.load(f)["dependencies"]["@jupyterlab/application"]


def _jupyter_server_extension_points():
    # jupyter_server finds the app through this hook when it loads this module as an extension
    return [{"module": __name__, "app": IntegrationSpacesLab}]


class IntegrationSpacesLab(LabServerApp):
    name = "integration_spaces_lab"
    app_name = "JupyterLab (integration-spaces build)"
    app_version = _lab_version()
    extension_url = "/lab"
    default_url = "/lab"
    app_url = "/lab"
    # only this front end: other server extensions installed system-wide are not loaded
    load_other_extensions = False
    static_dir = BUILD
    templates_dir = os.path.join(HERE, "templates")
    schemas_dir = os.path.join(BUILD, "schemas")
    themes_dir = os.path.join(BUILD, "themes")
    app_settings_dir = os.path.join(BUILD, "application_settings")

    # where JupyterLab itself keeps them, so a user's settings and layouts are shared with it (empty
    # directories, jupyterlab_server's default, would leave the front end unable to save either)
    @default("user_settings_dir")
    def _default_user_settings_dir(self):
        return os.path.join(jupyter_config_dir(), "lab", "user-settings")

    @default("workspaces_dir")
    def _default_workspaces_dir(self):
        return os.path.join(jupyter_config_dir(), "lab", "workspaces")

    def initialize_settings(self):
        super().initialize_settings()
        # jupyterlab_server puts settings["mathjax_url"] into the page config (fullMathjaxUrl); empty means its CDN
        if _mathjax_dir():
            self.settings["mathjax_url"] = url_path_join(self.serverapp.base_url, MATHJAX_URL_PATH, "MathJax.js")
        else:
            self.log.warning("no local MathJax (apt: libjs-mathjax): LaTeX in markdown cells needs the CDN")

    def initialize_handlers(self):
        super().initialize_handlers()
        mathjax = _mathjax_dir()
        if mathjax:
            # first: the lab's own page handler takes every other path under its URL
            self.handlers.insert(0, (rf"/{MATHJAX_URL_PATH}/(.*)", StaticFileHandler, {"path": mathjax}))


def main(argv=None):
    if not os.path.isfile(os.path.join(BUILD, "bundle.js")):
        sys.exit(
            f"launch.py: no JupyterLab build at {BUILD}/bundle.js: "
            "run `npm run lab:build` (or bash environment/setup.sh --with-jupyterlab)"
        )
    IntegrationSpacesLab.launch_instance(argv)


if __name__ == "__main__":
    main()
