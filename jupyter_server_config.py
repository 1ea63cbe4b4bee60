# JupyterLab settings for this repository. `make lab` loads this file (it puts the repository root on
# JUPYTER_CONFIG_PATH); a plain `jupyter lab` does not. See DEVELOPERS.md, "Notebooks in JupyterLab".
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location('vlkd_nbclean', Path(__file__).resolve().parent / 'tools' / 'nbclean.py')
_nbclean = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_nbclean)

# Save notebooks in their committed form (tools/nbclean.py): opening and saving one leaves git clean.
c.ServerApp.contents_manager_class = _nbclean.contents_manager_class()  # noqa: F821 (`c` is traitlets' config)
