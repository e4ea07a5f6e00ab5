"""Models: aliases -> hub ids, loading (dtype, device, attention), shipped shape configs.

``load_model("llava-1.5-7b")`` reads the checkpoint from the Hugging Face cache (or the hub
when online); ``load_model("testbed")`` the bundled tiny model; ``random_init=True`` builds
any registered model from its shipped config with random weights and no download.
"""

from vtwcli.models.loading import LoadedModel, config_from_dict, from_config, load_model
from vtwcli.models.memory import no_memory_check
from vtwcli.models.registry import (
    SPECS,
    ModelSpec,
    Resolved,
    resolve,
    shipped_config_dict,
    shipped_num_layers,
)

__all__ = [
    "SPECS",
    "LoadedModel",
    "ModelSpec",
    "Resolved",
    "config_from_dict",
    "from_config",
    "load_model",
    "no_memory_check",
    "resolve",
    "shipped_config_dict",
    "shipped_num_layers",
]
