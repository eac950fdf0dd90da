"""The college's field mapping, loaded and validated when the code location loads.

A broken mapping file therefore fails `dagster definitions validate` and the code location load,
naming the file, the line and the field, before any run can write with it.
"""

from integration_pipelines.lib.mapping import load_mapping
from integration_pipelines.settings import get_settings

FIELD_MAPPING = load_mapping(get_settings().field_mapping_file)
