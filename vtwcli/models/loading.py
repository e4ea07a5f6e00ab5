"""Loading a model by alias, hub id or directory, with a processor, on a device and dtype.

Every source takes the same path: a registered alias or hub id is read from the Hugging Face
cache (or downloaded when online), a directory is read as is, and ``random_init=True``
builds the architecture from a config (the shipped one for an alias) with random weights.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtwcli.errors import InputFileError, ModelNotFoundError, UsageError, VTWError
from vtwcli.models.cache import download_hint, offline, weights_cached
from vtwcli.models.registry import Resolved, resolve

DTYPES = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cuda", "cpu")
ATTNS = ("sdpa", "eager", "flash_attention_2")
DEFAULT_MAX_NEW_TOKENS = 32


@dataclass
class LoadedModel:
    """A model ready to answer: weights, processor, and what was loaded."""

    model: Any
    processor: Any
    arch: Any  # vtwcli.archs.ArchRecord (None only if vtwcli.archs does not know the type)
    alias: str | None
    model_id: str
    num_layers: int
    device: str
    dtype: str  # "bf16" | "fp16" | "fp32"
    attn: str
    random_init: bool = False
    synthetic_processor: bool = False  # random-init without a cached processor: word-free token ids
    revision: str | None = None
    prompt_style: str = "chat"  # default for prepare(): the chat template, or "vicuna_v1" (vtwcli.models.prompting)
    shrunk: Any = None  # vtwcli.models.shrink.Shrunk when built with shrink=True: what is smaller than the real model

    @property
    def config(self):
        return self.model.config

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    def model_ref(self):
        """The :class:`vtwcli.profiles.ModelRef` a profile for this model records."""
        from vtwcli.profiles import ModelRef

        return ModelRef(
            alias=self.alias,
            id=self.model_id,
            num_layers=self.num_layers,
            architecture=self.config.model_type,
            revision=self.revision,
        )

    def unknown_words(self, text: str) -> list[str]:
        """The whitespace-separated words of ``text`` the tokenizer can only map to its unknown
        token, in order, each once (a word-level vocabulary such as the testbed's; byte-level
        tokenizers know every word and return [])."""
        tok = self.tokenizer
        unk = getattr(tok, "unk_token_id", None)
        if unk is None or self.synthetic_processor:
            return []
        out: list[str] = []
        for word in text.split():
            if word in out:
                continue
            try:
                ids = tok(word, add_special_tokens=False)["input_ids"]
            except (TypeError, ValueError, KeyError):
                return []
            if unk in ids:
                out.append(word)
        return out

    # -- inputs ---------------------------------------------------------------------
    def prepare(self, prompts, images=None, videos=None, style: str | None = None):
        """Chat-templated, left-padded inputs on the model's device.

        ``prompts`` is a string or a list; ``images`` / ``videos`` give, per prompt, one item
        or a list of items (PIL images or paths; a video is a path or a (T, H, W, 3) array).
        With a single prompt, a flat list of images means all of them go with that prompt.
        ``style``: the prompt style (default :attr:`prompt_style`; see vtwcli.models.prompting).
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        per_images = _per_prompt(images, len(prompts), "images")
        per_videos = _per_prompt(videos, len(prompts), "videos")
        conversations = []
        for text, imgs, vids in zip(prompts, per_images, per_videos, strict=True):
            content = [{"type": "image"} for _ in imgs] + [{"type": "video"} for _ in vids]
            content.append({"type": "text", "text": text})
            conversations.append([{"role": "user", "content": content}])
        return self.prepare_chat(conversations, per_images, per_videos, style=style)

    def prepare_chat(self, conversations, images=None, videos=None, style: str | None = None):
        """Like :meth:`prepare` for whole conversations (lists of {role, content} messages)."""
        from vtwcli.data.images import load_image

        n = len(conversations)
        per_images = _per_prompt(images, n, "images") if not _is_nested(images, n) else images
        per_videos = _per_prompt(videos, n, "videos") if not _is_nested(videos, n) else videos
        texts = [self._template(conv, style) for conv in conversations]
        flat_images = [load_image(x) for imgs in per_images for x in imgs]
        flat_videos = [_load_video(v) for vids in per_videos for v in vids]
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if flat_images:
            kwargs["images"] = flat_images
        if flat_videos:
            kwargs["videos"] = flat_videos
        tok = self.tokenizer
        tok.padding_side = "left"
        try:
            try:
                batch = self.processor(**kwargs)
            except ValueError:
                if n < 2 or not flat_images or not all(per_images):
                    raise
                # some processors (Gemma 3) take a batch's images nested per prompt, not flat
                kwargs["images"] = [[load_image(x) for x in imgs] for imgs in per_images]
                batch = self.processor(**kwargs)
        except (ValueError, TypeError) as err:
            raise UsageError(f"the {self.alias or self.model_id} processor refused these inputs: {err}") from err
        if "labels" in batch:  # training targets some processors add (PaliGemma): generation takes none
            del batch["labels"]
        return batch.to(self.device, dtype=self.model.dtype) if hasattr(batch, "to") else batch

    def _template(self, conversation, style: str | None = None) -> str:
        style = style or self.prompt_style
        if style != "chat":
            from vtwcli.models.prompting import check_style, vicuna_v1

            check_style(style, self.arch, self.alias or self.model_id)
            return vicuna_v1(conversation, getattr(self.processor, "image_token", "<image>"),
                             getattr(self.processor, "video_token", "<video>"))  # fmt: skip
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        # No template saved with the processor: the bare placeholder + text layout.
        image_token = getattr(self.processor, "image_token", "<image>")
        video_token = getattr(self.processor, "video_token", "<video>")
        parts = []
        for message in conversation:
            for item in message["content"]:
                if item["type"] == "image":
                    parts.append(image_token + "\n")
                elif item["type"] == "video":
                    parts.append(video_token + "\n")
                else:
                    parts.append(item["text"])
        return "".join(parts)

    # -- outputs --------------------------------------------------------------------
    def generate(self, inputs, **gen) -> list[str]:
        """Greedy by default; returns only the newly generated text, one string per input row."""
        import torch

        kwargs = self._gen_kwargs(gen)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
        return [s.strip() for s in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _gen_kwargs(self, gen: dict[str, Any]) -> dict[str, Any]:
        kwargs = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, "do_sample": False, **gen}
        tok = self.tokenizer
        if "pad_token_id" not in kwargs and getattr(tok, "pad_token_id", None) is not None:
            kwargs["pad_token_id"] = tok.pad_token_id
        return kwargs


def _is_nested(items, n: int) -> bool:
    return isinstance(items, list) and len(items) == n and all(isinstance(x, list) for x in items)


def _per_prompt(items, n: int, what: str) -> list[list[Any]]:
    if items is None:
        return [[] for _ in range(n)]
    if not isinstance(items, (list, tuple)):
        items = [items]
    items = list(items)
    if n == 1 and not (len(items) == 1 and isinstance(items[0], (list, tuple))):
        return [items]  # a flat list with one prompt: all of them belong to it
    if len(items) != n:
        raise UsageError(f"got {len(items)} entries of {what} for {n} prompts; give one entry per prompt")
    return [[] if x is None else (list(x) if isinstance(x, (list, tuple)) else [x]) for x in items]


def _load_video(item, num_frames: int = 8):
    from vtwcli.models.video import sample_frames

    if isinstance(item, (str, Path)):
        return sample_frames(item, num_frames)
    return item


# -- device, dtype, attention ------------------------------------------------------------
def _pick_device(device: str) -> str:
    import torch

    index = None
    if isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        index, device = int(device[5:]), "cuda"  # one rank's own GPU under torchrun/accelerate
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if index is not None:
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device cuda:{index} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
        return f"cuda:{index}"
    return device


def _pick_dtype(dtype: str, device: str) -> str:
    import torch

    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def _check_attn(attn: str, device: str, dtype: str) -> None:
    if attn not in ATTNS:
        raise UsageError(f"--attn must be one of {', '.join(ATTNS)}, got {attn!r}")
    if attn != "flash_attention_2":
        return
    if importlib.util.find_spec("flash_attn") is None:
        raise UsageError(
            "--attn flash_attention_2 needs the flash-attn package, which is not installed; "
            "pip install -e '.[gpu]' in a clone of vtw, or pip install 'vtwcli[gpu]' (CUDA only), or use --attn sdpa"
        )
    if not device.startswith("cuda"):
        raise UsageError("--attn flash_attention_2 runs only on a CUDA GPU; use --attn sdpa on the CPU")
    if dtype == "fp32":
        raise UsageError("--attn flash_attention_2 needs --dtype bf16 or fp16, not fp32")


# -- loading ---------------------------------------------------------------------------
def load_model(
    name: str | None = "testbed",
    *,
    dtype: str = "auto",
    device: str = "auto",
    attn: str = "sdpa",
    random_init: bool = False,
    revision: str | None = None,
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, Any] | None = None,
    offload_folder: str | None = None,
    force: bool = False,
    context_tokens: int | None = None,
    shrink: bool = False,
) -> LoadedModel:
    """Load ``name`` (alias, hub id or directory; default the bundled testbed).

    ``random_init=True`` builds the architecture with random weights and no download: from the
    shipped config for a registered alias, else from the directory's or cached config.json.
    Speed and memory depend only on shapes, so this is enough for benchmarking.

    ``device_map`` (``"auto"``, ``"balanced"``, ``"balanced_low_0"``, ``"sequential"`` or an
    explicit {module name: device} dict) places the layers over several devices with
    accelerate, for a model larger than one device; ``max_memory`` and ``offload_folder``
    are passed on (CPU and disk offload). ``LoadedModel.device`` is then where inputs go.

    Before anything is built or read, the weights (counted on the meta device) plus the KV cache
    of ``context_tokens`` tokens are compared with the device's free memory, and a model that
    would not fit is refused with one line saying what to do (:mod:`vtwcli.models.memory`);
    ``force=True`` skips that check.

    ``shrink=True`` (with ``random_init``) keeps the real processor, chat template, vocabulary and
    vision-token count and builds a narrow, shallow decoder and vision tower that a CPU can run
    (:mod:`vtwcli.models.shrink`); ``LoadedModel.shrunk`` says what was shrunk.
    """
    resolved = resolve(name)
    _check_device_map(device_map, random_init)
    dev = _pick_device(device)
    dt = _pick_dtype(dtype, dev)
    _check_attn(attn, dev, dt)
    if resolved.is_testbed and not (resolved.local_dir / "config.json").is_file():
        raise ModelNotFoundError(
            f"the bundled testbed model is missing from {resolved.local_dir}; reinstall vtwcli "
            "(or, from a source checkout, build it with the testbed trainer under scripts/)"
        )
    if shrink and not random_init:
        raise UsageError(
            "--shrink builds a small random-weight copy of the architecture; add --random-init "
            "(real weights cannot be shrunk)"
        )
    if random_init:
        config = _config_for_random(resolved, revision)
        shrunk = None
        if shrink:
            from vtwcli.models.shrink import cpu_config_dict

            shrunk_dict, shrunk = cpu_config_dict(config.to_dict())
            config = config_from_dict(shrunk_dict)
        _check_memory(config, resolved, dt, dev, force, context_tokens, random_init=True)
        processor, synthetic = _processor_for_random(resolved, revision)
        loaded = from_config(
            config, processor=processor, alias=resolved.alias, model_id=resolved.model_id, dtype=dt,
            device=dev, attn=attn, synthetic_processor=synthetic, revision=revision,
        )
        loaded.shrunk = shrunk
        return loaded
    source = _weights_source(resolved, revision)
    if device_map is None:
        config = _cached_config(source, resolved, revision)
        if config is not None:
            _check_memory(config, resolved, dt, dev, force, context_tokens, random_init=False)
    placement = None
    if device_map is not None:
        placement = {"device_map": device_map, "max_memory": max_memory, "offload_folder": offload_folder}
    model = _from_pretrained(source, resolved, dt, dev, attn, revision, placement)
    processor = _processor_from(source, resolved, revision)
    if placement is not None:
        dev = input_device(model)
    return _wrap(model, processor, resolved.alias, resolved.model_id, dev, dt, attn, False, False, revision)


def weights_bytes_before_loading(
    name: str | None,
    *,
    dtype: str = "auto",
    device: str = "auto",
    random_init: bool = False,
    shrink: bool = False,
    revision: str | None = None,
) -> int | None:
    """Bytes the weights of ``name`` will take once :func:`load_model` loads it with these
    options, from its config alone (the model built on the meta device: no weight read, no
    download), or None when that config is not on disk (the load itself then says why).

    The same count as :func:`vtwcli.models.memory.estimate`'s weights and as a loaded model's
    parameters and buffers (tests/models/test_memory_check.py)."""
    from vtwcli.models.memory import estimate

    try:
        resolved = resolve(name)
        dt = _pick_dtype(dtype, _pick_device(device))
        if random_init:
            config = _config_for_random(resolved, revision)
            if shrink:
                from vtwcli.models.shrink import cpu_config_dict

                config = config_from_dict(cpu_config_dict(config.to_dict())[0])
        else:
            source = str(resolved.local_dir) if resolved.local_dir is not None else resolved.model_id
            config = _cached_config(source, resolved, revision)  # local files only: never a download
    except (VTWError, OSError, ValueError):
        return None  # the load reports it, with its own message
    if config is None:
        return None
    return estimate(config, dt, context_tokens=0).weights


def _check_memory(config, resolved: Resolved, dtype: str, device: str, force: bool, context_tokens, random_init):
    from vtwcli.models.memory import DEFAULT_CONTEXT_TOKENS, check_fits

    check_fits(
        config, name=resolved.alias or resolved.model_id, dtype=dtype, device=device,
        context_tokens=context_tokens or DEFAULT_CONTEXT_TOKENS, force=force, random_init=random_init,
    )  # fmt: skip


def _cached_config(source: str, resolved: Resolved, revision):
    """The model's config from disk (a directory or the local cache), or None: never a download."""
    from transformers import AutoConfig

    kwargs: dict[str, Any] = {"local_files_only": True}
    if revision and resolved.local_dir is None:
        kwargs["revision"] = revision
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError):
        return None


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def _check_device_map(device_map, random_init: bool) -> None:
    if device_map is None:
        return
    if isinstance(device_map, str) and device_map not in DEVICE_MAPS:
        raise UsageError(f"--device-map must be one of {', '.join(DEVICE_MAPS)}, got {device_map!r}")
    if not isinstance(device_map, (str, dict)):
        raise UsageError(f"device_map must be one of {', '.join(DEVICE_MAPS)} or a dict, got {device_map!r}")
    if importlib.util.find_spec("accelerate") is None:
        raise UsageError("--device-map needs the accelerate package: pip install accelerate")
    if random_init:
        raise UsageError(
            "--device-map places real weights over several devices; --random-init builds the model on one "
            "device. Drop one of them"
        )


def input_device(model) -> str:
    """Where a device-mapped model wants its inputs: accelerate's main (execution) device."""
    import torch

    hook = getattr(model, "_hf_hook", None)
    dev = getattr(hook, "execution_device", None)
    if dev is None:
        dev = next((p.device for p in model.parameters() if p.device.type != "meta"), "cpu")
    dev = torch.device(f"cuda:{dev}" if isinstance(dev, int) else dev)
    return "cpu" if dev.type == "cpu" else str(dev)


def from_config(
    config,
    *,
    processor,
    alias: str | None = None,
    model_id: str = "random",
    dtype: str = "fp32",
    device: str = "cpu",
    attn: str = "sdpa",
    synthetic_processor: bool = False,
    revision: str | None = None,
) -> LoadedModel:
    """Build ``config``'s architecture with random weights directly on ``device`` in ``dtype``."""
    import torch
    from transformers import AutoModelForImageTextToText

    dev = _pick_device(device)
    dt = _pick_dtype(dtype, dev)
    _check_attn(attn, dev, dt)
    torch.manual_seed(0)
    # Building under the target device avoids a full fp32 copy in host memory first.
    with torch.device(dev):
        try:
            model = AutoModelForImageTextToText.from_config(config, dtype=torch_dtype(dt), attn_implementation=attn)
        except ValueError as err:
            _raise_if_attn_unsupported(err, attn)
            raise
    model.eval()
    return _wrap(model, processor, alias, model_id, dev, dt, attn, True, synthetic_processor, revision)


def _wrap(model, processor, alias, model_id, device, dtype, attn, random_init, synthetic, revision) -> LoadedModel:
    arch = _arch_for(model.config)
    return LoadedModel(
        model=model,
        processor=processor,
        arch=arch,
        alias=alias,
        model_id=model_id,
        num_layers=_num_layers(model.config, arch),
        device=device,
        dtype=dtype,
        attn=attn,
        random_init=random_init,
        synthetic_processor=synthetic,
        revision=revision,
    )


def _arch_for(config):
    try:
        from vtwcli.archs import get_arch
    except ImportError:  # the archs package is not present in this build
        return None
    from vtwcli.errors import UnsupportedModelError

    try:
        return get_arch(config)
    except UnsupportedModelError:
        return None


def _num_layers(config, arch) -> int:
    if arch is not None and hasattr(arch, "num_layers"):
        return int(arch.num_layers(config))
    return int(config.get_text_config().num_hidden_layers)


def _weights_source(resolved: Resolved, revision: str | None) -> str:
    if resolved.local_dir is not None:
        return str(resolved.local_dir)
    if offline() and weights_cached(resolved.model_id, revision) == "no":
        raise ModelNotFoundError(
            f"{resolved.model_id} is not in the local Hugging Face cache and offline mode is on "
            f"(HF_HUB_OFFLINE=1); download it first with {download_hint(resolved.model_id, revision)} "
            "on a machine with network, or pass a local directory, or use --random-init for shapes only"
        )
    if not offline() and weights_cached(resolved.model_id, revision) == "no":
        from vtwcli.hub import hub_reachable

        if not hub_reachable():
            raise ModelNotFoundError(
                f"{resolved.model_id} is not in the local Hugging Face cache and the hub cannot be reached "
                f"from this machine; download it with {download_hint(resolved.model_id, revision)} where there "
                "is network (then copy the cache or set HF_HOME), or pass a local directory, or use --random-init"
            )
    return resolved.model_id


def _from_pretrained(source: str, resolved: Resolved, dtype: str, device: str, attn: str, revision, placement=None):
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype), "attn_implementation": attn}
    if revision and resolved.local_dir is None:
        kwargs["revision"] = revision
    if placement is not None:
        kwargs.update({key: value for key, value in placement.items() if value is not None})
    elif importlib.util.find_spec("accelerate") is not None:
        kwargs["device_map"] = {"": device}  # stream weights straight to the device
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    except OSError as err:
        raise ModelNotFoundError(_load_failure(resolved, revision, err)) from err
    except ValueError as err:
        _raise_if_attn_unsupported(err, attn)
        if placement is not None and "offload" in str(err):
            raise UsageError(
                f"the model does not fit the devices and memory given to --device-map: {str(err).splitlines()[0]}"
            ) from err
        if "Unrecognized configuration class" in str(err) or "model_type" in str(err):
            raise ModelNotFoundError(
                f"{resolved.name} is not a vision-language model transformers can load natively: {err}"
            ) from err
        raise
    if "device_map" not in kwargs:
        model.to(device)
    model.eval()
    return model


def _raise_if_attn_unsupported(err: ValueError, attn: str) -> None:
    if "does not support an attention implementation" in str(err):
        raise UsageError(
            f"this model's decoder has no --attn {attn} implementation in transformers "
            f"({str(err).split('.')[0]}); use --attn eager"
        ) from err


def _load_failure(resolved: Resolved, revision, err: Exception) -> str:
    if resolved.local_dir is not None:
        return f"cannot load the model in {resolved.local_dir}: {err}"
    if offline():
        return (
            f"{resolved.model_id} is not fully in the local cache and offline mode is on; "
            f"download it with {download_hint(resolved.model_id, revision)}"
        )
    return (
        f"cannot load {resolved.model_id} from the Hugging Face hub ({str(err).splitlines()[0]}); "
        f"check the id and your network, or download it with {download_hint(resolved.model_id, revision)}"
    )


def _processor_from(source: str, resolved: Resolved, revision):
    from transformers import AutoProcessor

    kwargs: dict[str, Any] = {}
    if revision and resolved.local_dir is None:
        kwargs["revision"] = revision
    try:
        processor = AutoProcessor.from_pretrained(source, **kwargs)
    except OSError as err:
        processor = _processor_without_video(source, kwargs, err)
        if processor is None:
            raise ModelNotFoundError(_load_failure(resolved, revision, err)) from err
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        tok.padding_side = "left"
    return processor


def _processor_without_video(source: str, kwargs: dict[str, Any], err: OSError):
    """transformers' video processors need torchvision; without it the family's processor is loaded
    for images only (videos are refused by the processor then). None when that is not the problem."""
    from vtwcli.models.synthetic import _has_torchvision, _without_video

    if _has_torchvision() or "video processor" not in str(err):
        return None
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.utils import cached_file

    try:
        import json

        config_file = cached_file(source, "processor_config.json", **kwargs)
        saved = json.loads(Path(config_file).read_text(encoding="utf-8"))
        cls = getattr(transformers, str(saved.pop("processor_class", "")), None)
        if cls is None:
            return None
        parts = ("image_processor", "video_processor", "tokenizer", "feature_extractor")
        extra = {k: v for k, v in saved.items() if k not in parts and not isinstance(v, dict) and not k.endswith("_class")}
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        template = getattr(tokenizer, "chat_template", None)
        try:
            template = Path(cached_file(source, "chat_template.jinja", **kwargs)).read_text(encoding="utf-8")
        except OSError:
            pass
        return _without_video(cls)(
            image_processor=AutoImageProcessor.from_pretrained(source, **kwargs), tokenizer=tokenizer,
            video_processor=None, chat_template=template, **extra,
        )
    except (OSError, ValueError, TypeError):
        return None


def _config_for_random(resolved: Resolved, revision):
    from transformers import AutoConfig

    if resolved.spec is not None:
        from vtwcli.models.registry import shipped_config_dict

        return config_from_dict(shipped_config_dict(resolved.spec.alias))
    if resolved.local_dir is not None:
        return AutoConfig.from_pretrained(str(resolved.local_dir))
    try:
        return AutoConfig.from_pretrained(resolved.model_id, revision=revision, local_files_only=True)
    except OSError as err:
        raise ModelNotFoundError(
            f"--random-init needs {resolved.model_id}'s config.json, which is not in the local cache and no "
            f"shipped config exists for it; use a registered alias (see `vtw models`) or download it with "
            f"{download_hint(resolved.model_id, revision)}"
        ) from err


def config_from_dict(data: dict[str, Any]):
    """A transformers config from a config.json-style dict (``model_type`` picks the class)."""
    from transformers import AutoConfig

    data = dict(data)
    model_type = data.pop("model_type")
    return AutoConfig.for_model(model_type, **data)


def _processor_for_random(resolved: Resolved, revision):
    """The real processor when it is on disk; otherwise a synthetic one for shapes-only runs."""
    if resolved.local_dir is not None:
        return _processor_from(str(resolved.local_dir), resolved, revision), False
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(resolved.model_id, revision=revision, local_files_only=True)
        processor.tokenizer.padding_side = "left"
        return processor, False
    except (OSError, ValueError):
        pass
    if resolved.spec is None or resolved.spec.shipped().get("processor") is None:
        why = (resolved.spec.shipped().get("processor_note") if resolved.spec else None) or (
            "vtw ships no stand-in processor for it"
        )
        raise ModelNotFoundError(
            f"--random-init for {resolved.model_id} needs its processor files in the local cache ({why}); "
            f"download them with {download_hint(resolved.model_id, revision)}, or save a model and processor to a "
            "directory and pass that"
        )
    from vtwcli.models.synthetic import synthetic_processor

    return synthetic_processor(resolved.spec.alias), True


def check_image_file(path: str | Path) -> Path:
    """Fail early (before a model loads) on a missing or unreadable image."""
    from vtwcli.data.images import load_image

    p = Path(path)
    if p.is_dir():
        raise InputFileError(f"image {p} is a directory, not an image file")
    load_image(p)
    return p
