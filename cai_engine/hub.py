"""Push an export or a trained model folder to the Hugging Face Hub, with one-line failures.

The local folder is written first and kept whatever happens: a missing token, no network or a
refused repo is one line saying what to do, never a traceback and never a lost export.
"""

from __future__ import annotations

from pathlib import Path

from cai_engine.errors import CaiError


def push_folder(folder: Path, repo_id: str, *, repo_type: str, private: bool = False) -> str:
    """Upload ``folder`` to ``repo_id`` (``dataset`` or ``model`` repo); returns the repo URL."""
    if "/" not in repo_id:
        raise CaiError(f"--push-to-hub {repo_id!r}: write ORG/NAME (or USER/NAME); {folder} is saved locally")
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.utils import get_token
    except ImportError:  # pragma: no cover - huggingface_hub comes with datasets/transformers
        raise CaiError(f"--push-to-hub needs huggingface_hub (pip install huggingface_hub); {folder} is saved locally") from None
    token = get_token()
    if not token:
        raise CaiError(f"--push-to-hub {repo_id}: no Hugging Face token; set HF_TOKEN or run `hf auth login`, then "
                       f"rerun (the local copy in {folder} is kept)")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                          commit_message="Upload from cai-engine")
    except Exception as exc:  # noqa: BLE001 - network, auth and offline-mode errors alike
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CaiError(f"--push-to-hub {repo_id} failed ({reason[:200]}); the local copy in {folder} is kept") from None
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"https://huggingface.co/{prefix}{repo_id}"
