"""The one package of tamrin that talks to the Hugging Face Hub (through `huggingface_hub`).

Uploads go in one commit and delete nothing unasked (`upload`); downloads go through
huggingface_hub's cache, so HF_HOME, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE work as they do
everywhere else (`download`). Every failure leaves this package as a `HubError` whose message says
what happened and what to do, with the original error as its cause (`errors`).

Tokens: every function takes ``token=None`` and passes it through untouched, so that huggingface_hub
finds HF_TOKEN or the stored login itself. No token is ever logged, formatted into a message or written.
"""

from __future__ import annotations

import os

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from tamrin.hub.card import render_model_card
from tamrin.hub.download import download, download_file
from tamrin.hub.errors import HubError
from tamrin.hub.upload import Commit, local_files, upload_folder, upload_saved

__all__ = [
    "Commit",
    "HubError",
    "download",
    "download_file",
    "is_repo_id",
    "local_files",
    "render_model_card",
    "upload_folder",
    "upload_saved",
]


def is_repo_id(name: str) -> bool:
    """Whether `name` reads as a Hub repo id ("user/repo" or "repo") rather than a local path.

    Args:
        name: A string a user gave where a path or a repo id is accepted.

    Returns:
        True when `name` is a valid repo id (huggingface_hub's rules) and no file or folder of that
        name exists locally; an existing local path always wins.
    """
    if not isinstance(name, str) or os.path.exists(os.path.expanduser(name)):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True
