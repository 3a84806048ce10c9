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
"""
import json
import os
import sys

from jupyter_core.paths import jupyter_config_dir
from jupyterlab_server import LabServerApp
from traitlets import default

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build")


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


def main(argv=None):
    if not os.path.isfile(os.path.join(BUILD, "bundle.js")):
        sys.exit(
            f"launch.py: no JupyterLab build at {BUILD}/bundle.js: "
            "run `npm run lab:build` (or bash environment/setup.sh --with-jupyterlab)"
        )
    IntegrationSpacesLab.launch_instance(argv)


if __name__ == "__main__":
    main()
