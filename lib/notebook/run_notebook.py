"""Execute one notebook with nbclient and always write the (partially) executed copy.

Used by lib/notebook/execute.ts; runs on Debian's /usr/bin/python3 (the one with Jupyter).
Unlike `jupyter nbconvert --execute`, this writes the executed notebook even when a cell fails,
records which cell failed, and adds an `error` output to that cell: tslab reports failures only
as stderr text plus an execute_reply with status "error", which nbconvert would not store.

usage: run_notebook.py INPUT OUTPUT RESULT_JSON KERNEL_NAME CELL_TIMEOUT_S STARTUP_TIMEOUT_S CWD
"""
import json
import os
import sys
import time
import traceback

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError


def main():
    inp, out, result_path, kernel_name, cell_timeout, startup_timeout, cwd = sys.argv[1:8]
    nb = nbformat.read(inp, as_version=4)
    state = {"cell": None}

    def on_cell_start(cell, cell_index, **_):
        state["cell"] = cell_index
        # progress marker for the caller (lib/notebook/execute.ts parses it for onCell)
        sys.stderr.write("::cell %d %d\n" % (cell_index, len(nb.cells)))
        sys.stderr.flush()

    def on_notebook_start(**_):
        # record the kernel's pid: the kernel runs in its own session, so the caller can end it
        # if it has to kill this runner (total timeout)
        try:
            pid = client.km.provisioner.process.pid
            with open(result_path + ".kernel-pid", "w") as f:
                f.write(str(pid))
        except Exception:
            pass

    client = NotebookClient(
        nb,
        timeout=int(cell_timeout),
        startup_timeout=int(startup_timeout),
        kernel_name=kernel_name,
        allow_errors=False,
        record_timing=True,
        resources={"metadata": {"path": cwd}},
        on_cell_start=on_cell_start,
        on_notebook_start=on_notebook_start,
    )
    failure = None
    t0 = time.time()
    try:
        client.execute()
    except CellTimeoutError as e:
        failure = {"kind": "timeout", "ename": "CellTimeoutError", "evalue": str(e).strip()[-2000:]}
    except CellExecutionError as e:
        # tslab reports failures without an exception name
        failure = {"kind": "execution", "ename": "CellFailed" if e.ename in ("", "<Error>") else e.ename, "evalue": e.evalue}
    except DeadKernelError as e:
        failure = {"kind": "kernel", "ename": "DeadKernelError", "evalue": str(e)[-2000:]}
    except Exception as e:  # kernel not found, startup timeout, ...
        failure = {"kind": "runner", "ename": type(e).__name__, "evalue": (str(e) or traceback.format_exc())[-2000:]}
    duration = time.time() - t0

    if failure is not None:
        idx = state["cell"]
        failure["cellIndex"] = idx
        if idx is not None and failure["kind"] != "runner":
            cell = nb.cells[idx]
            stderr = "".join(
                o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"
            )
            if not failure.get("evalue"):
                failure["evalue"] = stderr.strip()[-2000:]
            if not any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                cell.setdefault("outputs", []).append(
                    nbformat.v4.new_output(
                        "error",
                        ename=failure["ename"] or "Error",
                        evalue=failure["evalue"] or "cell failed",
                        traceback=[],
                    )
                )

    tmp = out + ".%d.tmp" % os.getpid()
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    with open(result_path, "w") as f:
        json.dump({"failure": failure, "durationS": duration}, f)


if __name__ == "__main__":
    main()
