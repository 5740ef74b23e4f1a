"""Where pretrained weights come from when they are not on this machine's disk: the Hugging Face hub
(timm's ``hf-hub:`` names and default weights, transformers ids) and Kaggle Models
(``kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]``, through ``kagglehub``).

Without network both libraries retry for a minute before they give up. Here the hub is asked once a
process, with a short timeout; when it is out of reach, weights come from the libraries' local caches
only, and a missing one fails in seconds with what to do instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunelab.errors import ModelError

HUB_PROBE_S = 3.0  # seconds to wait for the hub before reading its local cache only
HF_HUB_PREFIX = "hf-hub:"  # timm's prefix of a hub repo id as a model name
HUB_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")
KAGGLE_PREFIX = "kaggle:"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """One request to the hub (HF_ENDPOINT) with a short timeout and no retries, once a process.
    Without network, ``from_pretrained`` retries each file for about 25 s before it looks in the
    local cache; with this answer it looks there at once. HF_HUB_OFFLINE=1 says offline outright."""
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return False
    return _answers(lambda: get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_S).status_code)


def _answers(status: Callable[[], int]) -> bool:
    """Whether a server answered the one request ``status`` makes (with a status under 500): no
    route, no name resolution, a timeout or a refused proxy all say offline."""
    try:
        return int(status()) < 500
    except Exception:
        return False


def is_hub_id(repo: str) -> bool:
    """Whether ``repo`` is a hub repo id (NAME or ORG/NAME), as huggingface_hub checks it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        return False
    return True


def hub_id_in_url(text: str) -> str | None:
    """ORG/NAME when ``text`` is the URL of a model's hub page (https://huggingface.co/ORG/NAME/...)."""
    from urllib.parse import urlparse

    url = urlparse(text.strip())
    parts = [p for p in url.path.split("/") if p]
    if url.scheme in ("http", "https") and url.hostname in HUB_HOSTS and len(parts) >= 2 and is_hub_id("/".join(parts[:2])):
        return "/".join(parts[:2])
    return None


def timm_hub_repo(name: str) -> str:
    """The repo id of timm backbone name ``hf-hub:ORG/NAME[@REVISION]``; a ModelError when what follows
    the prefix is not a repo id (a URL of the model's page, say: timm and huggingface_hub would fail
    deep inside with a traceback)."""
    repo = name[len(HF_HUB_PREFIX) :].split("@")[0]
    if is_hub_id(repo):
        return repo
    from_url = hub_id_in_url(name[len(HF_HUB_PREFIX) :])
    raise ModelError(
        f"model.backbone: {name!r} is not a hub model name: hf-hub: takes a hub repo id ORG/NAME "
        "(optionally @REVISION), not a URL or a path, e.g. hf-hub:timm/resnet18.a1_in1k"
        + (f"; did you mean hf-hub:{from_url}?" if from_url else "")
    )


def cached_hub_file(repo: str, filenames: tuple[str, ...]) -> str | None:
    """The first of ``filenames`` of hub repo ``repo`` in the local hub cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    for f in filenames:
        path = try_to_load_from_cache(repo, f)
        if isinstance(path, str):
            return path
    return None


# --- Kaggle Models ---------------------------------------------------------------------------------


def is_kaggle(spec: str) -> bool:
    return spec.startswith(KAGGLE_PREFIX)


def kaggle_weights(spec: str) -> Path:
    """The weights file of a Kaggle Models handle (``kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]``):
    from kagglehub's cache when it holds the handle (the highest cached version of an unversioned
    one), else downloaded by ``kagglehub.model_download``. The model folder must hold one weights
    file (.safetensors preferred, then .pth/.pt/.bin)."""
    handle = spec[len(KAGGLE_PREFIX) :].strip("/")
    try:
        import kagglehub  # noqa: F401  (the cache layout and the download are kagglehub's)
        from kagglehub.handle import parse_model_handle
    except ImportError:
        raise ModelError(f"model.weights: {spec} needs kagglehub: pip install kagglehub") from None
    try:
        h = parse_model_handle(handle)
    except ValueError as e:
        raise ModelError(
            f"model.weights: {spec} is not a Kaggle Models handle ({e}); valid: "
            "kaggle:OWNER/MODEL/FRAMEWORK/VARIATION or .../VERSION, e.g. kaggle:keras/resnet/pyTorch/18/1"
        ) from None
    folder = _kaggle_cached(h) or _kaggle_download(spec, handle)
    return _one_weights_file(folder, spec)


def _kaggle_cached(h: Any) -> Path | None:
    """The cached folder of handle ``h`` (its own version, or the highest cached one)."""
    from kagglehub.cache import Cache, get_cached_path

    if h.is_versioned():
        path = Cache().load_from_cache(h)
        return Path(path) if path else None
    versions = Path(get_cached_path(h.with_version(1))).parent
    found = sorted((int(p.name) for p in versions.glob("*") if p.name.isdigit()), reverse=True) if versions.is_dir() else []
    for v in found:
        path = Cache().load_from_cache(h.with_version(v))
        if path:
            return Path(path)
    return None


def _kaggle_download(spec: str, handle: str) -> Path:
    import kagglehub

    if not _kaggle_reachable():
        raise ModelError(
            f"model.weights: {spec} is not in kagglehub's cache and Kaggle is out of reach (no "
            "network?). Download it where there is a network (kagglehub.model_download), copy the "
            "cache folder (KAGGLEHUB_CACHE, default ~/.cache/kagglehub), or point model.weights at "
            "the weights file itself"
        )
    try:
        return Path(kagglehub.model_download(handle))
    except Exception as e:  # unknown handle, no credentials for a private model, ...
        raise ModelError(f"model.weights: could not download {spec} ({type(e).__name__}: {e})") from None


@functools.lru_cache(maxsize=1)
def _kaggle_reachable() -> bool:
    """One request to Kaggle with a short timeout, once a process (kagglehub itself retries)."""
    import urllib.request

    def status() -> int:
        with urllib.request.urlopen("https://www.kaggle.com", timeout=HUB_PROBE_S) as r:
            return int(r.status)

    return _answers(status)


def _one_weights_file(folder: Path, spec: str) -> Path:
    files = sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    for suffix in WEIGHT_SUFFIXES:  # safetensors first: no pickle to trust
        of_kind = [p for p in files if p.suffix == suffix]
        if len(of_kind) == 1:
            return of_kind[0]
        if len(of_kind) > 1:
            raise ModelError(
                f"model.weights: {spec} holds {len(of_kind)} {suffix} files "
                f"({', '.join(p.name for p in of_kind[:5])}); point model.weights at one of them "
                f"under {folder}"
            )
    raise ModelError(f"model.weights: {spec} ({folder}) holds no weights file ({', '.join(WEIGHT_SUFFIXES)})")
