"""`hf:<org>/<name>[@revision]`: a Hugging Face hub model as a local transformers folder.

huggingface_hub's snapshot_download fetches into its cache (safetensors, configs and tokenizer
files only: no pickled weights, no remote code) when online and reads the cache offline
(HF_HUB_OFFLINE=1 or no network). Core: no torch; the validate pass resolves init_from with it.
"""
from __future__ import annotations

from pathlib import Path

HUB_PREFIX = "hf:"
# What a model folder needs: weights as safetensors, configs, tokenizer and chat template.
ALLOW_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.json", "*.jinja", "*.txt", "*.model"]


class HubError(ValueError):
    """The reference cannot be resolved (bad form, not cached offline, not on the hub)."""


def parse_hub_ref(ref: str) -> tuple[str, str | None]:
    """`hf:org/name@rev` -> ("org/name", "rev")."""
    name, _, revision = ref[len(HUB_PREFIX):].partition("@")
    if name.count("/") != 1 or not all(name.split("/")):
        raise HubError(f"{ref!r}: expected hf:<org>/<name>[@revision]")
    return name, revision or None


def resolve_hub(ref: str) -> Path:
    """The local snapshot folder of `ref`, downloaded into the hub cache if needed and possible."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    name, revision = parse_hub_ref(ref)
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=ALLOW_PATTERNS))
    except LocalEntryNotFoundError:
        raise HubError(f"{ref}: not in the Hugging Face cache and the hub is unreachable (offline): download it "
                       "once online, or point init_from at a local transformers folder") from None
    except (HfHubHTTPError, OSError) as err:
        raise HubError(f"{ref}: {str(err).splitlines()[0]}") from None
