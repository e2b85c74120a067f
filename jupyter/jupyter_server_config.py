# The learners' Jupyter server settings. `make lab` (and `make test`) copy this file into the virtual
# environment's Jupyter configuration folder (.venv/etc/jupyter/); with conda:
# cp jupyter/jupyter_server_config.py "$CONDA_PREFIX/etc/jupyter/".
#
# Widgets survive a reopen. A slider or progress bar lives in the kernel; the notebook file can only
# hold a pointer to it, so after a kernel restart a reopened notebook would show
# "Error displaying widget: model not found" in place of every explorer and tqdm bar. Saving therefore
# leaves widget views out of the file: an explorer's cell keeps one line saying to run it again, a
# progress bar (its text is stale by then) is left out. While the notebook is open nothing changes on
# screen; JupyterLab's "save widget state" setting stays off (it would store every figure of every
# explorer in the notebook, and closed progress bars would still fail to display).
import re

c = get_config()  # noqa: F821

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CONTROLS = re.compile(r"^\s*\w+\(children=")  # interactive(children=(...)), VBox(children=(...)): sliders
RUN_AGAIN = "[Sliders are not saved with the notebook: run this cell to bring them back.]"


def forget_widget_views(model, **kwargs):
    """Pre-save hook: replace the notebook's widget outputs with what a reopened notebook can show."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    for cell in model["content"].get("cells", []):
        outputs = cell.get("outputs") or []
        if not any(WIDGET_VIEW in (out.get("data") or {}) for out in outputs):
            continue
        kept, noted = [], False
        for out in outputs:
            data = out.get("data") or {}
            if WIDGET_VIEW not in data:
                kept.append(out)
                continue
            text = data.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            if CONTROLS.match(text) and not noted:
                kept.append({"output_type": "display_data", "metadata": {}, "data": {"text/plain": RUN_AGAIN}})
                noted = True
        cell["outputs"] = kept


c.ContentsManager.pre_save_hook = forget_widget_views
