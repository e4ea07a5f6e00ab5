"""A stand-in processor for random-init models whose real processor is not on disk.

Benchmarking a random-weight model needs inputs of the right *shape*: as many image
placeholder tokens as the real processor would insert, pixel tensors of the real size, and
a prompt of realistic length. This builds the model family's real transformers processor
class (so the placeholder expansion and image preprocessing are transformers' own) around a
word-level tokenizer: every whitespace-separated word is one token (unknown words map to an
``<unk>`` id), the special tokens sit at the checkpoint's real ids, and id ``i`` otherwise
decodes as ``w<i>``. Answers from such a model are meaningless token strings by design.
"""

from __future__ import annotations

from functools import cache

from vtwcli.models.registry import SPECS


@cache
def _tokenizer(alias: str):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    shipped = SPECS[alias].shipped()
    vocab_size = int(shipped["config"]["text_config"]["vocab_size"])
    tokens: dict[str, list] = shipped["processor"]["tokens"]
    vocab = {f"w{i}": i for i in range(vocab_size)}
    for text, idx in tokens.values():
        vocab.pop(f"w{idx}", None)
        vocab[text] = idx
    core = Tokenizer(WordLevel(vocab, unk_token=tokens["unk"][0]))
    core.pre_tokenizer = WhitespaceSplit()
    if "bos" in tokens:  # Llama-family tokenizers start every sequence with BOS; keep the length honest
        bos, bos_id = tokens["bos"]
        core.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, bos_id)])
    named = {"bos": "bos_token", "eos": "eos_token", "unk": "unk_token", "pad": "pad_token"}
    special = {named[k]: v[0] for k, v in tokens.items() if k in named}
    extra = {k: v[0] for k, v in tokens.items() if k not in named and k != "im_start"}
    tok = PreTrainedTokenizerFast(tokenizer_object=core, extra_special_tokens=extra, **special)
    others = [v[0] for k, v in tokens.items() if k == "im_start"]
    if others:
        tok.add_special_tokens({"additional_special_tokens": others})
    tok.padding_side = "left"
    return tok


def synthetic_processor(alias: str):
    """The family's processor with a word-level tokenizer (see the module docstring)."""
    import copy

    import transformers
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    spec = SPECS[alias].shipped()["processor"]
    backends = IMAGE_PROCESSOR_MAPPING_NAMES[spec["image_processor_type"]]
    # No torchvision here means the PIL image processors; both give the same shapes.
    name = backends.get("torchvision") if _has_torchvision() else None
    name = name or backends.get("pil") or backends.get("torchvision")
    image_processor = getattr(transformers, name)(**spec["image_processor"])
    cls = getattr(transformers, spec["class"])
    kwargs = dict(spec["kwargs"])
    if "video_processor" in cls.get_attributes():
        video = _video_processor(spec["image_processor_type"])
        kwargs["video_processor"] = video
        if video is None:
            cls = _without_video(cls)
    return cls(
        image_processor=image_processor,
        tokenizer=copy.deepcopy(_tokenizer(alias)),
        chat_template=spec["chat_template"],
        **kwargs,
    )


@cache
def _without_video(cls):
    """``cls`` accepting ``video_processor=None``: transformers' video processors need torchvision,
    and without it even the class check for that argument fails. Images still work; videos do not."""

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None
        return cls.check_argument_for_proper_class(self, argument_name, argument)

    @classmethod
    def get_attributes(klass):
        names = cls.get_attributes()
        return [a for a in names if a != "video_processor"] if klass._saving else names

    def save_pretrained(self, *args, **kwargs):  # write everything but the missing video processor
        type(self)._saving = True
        try:
            return cls.save_pretrained(self, *args, **kwargs)
        finally:
            type(self)._saving = False

    return type(
        cls.__name__, (cls,),
        {"check_argument_for_proper_class": check_argument_for_proper_class, "get_attributes": get_attributes,
         "save_pretrained": save_pretrained, "_saving": False},
    )


def _has_torchvision() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


def torchvision_problem() -> str | None:
    """Why the installed torchvision does not load, as one line saying what to do; None when it
    loads or is not installed. The torchvision wheels on the package index are CUDA builds: next
    to a CPU torch their compiled ops do not load, and transformers, which imports torchvision
    whenever it is installed, then fails to import even a config class."""
    import importlib
    import importlib.metadata

    if importlib.util.find_spec("torchvision") is None:
        return None
    try:
        importlib.import_module("torchvision")
    except Exception as err:  # a RuntimeError from its op registrations, an OSError from its libraries
        import torch

        try:
            version = importlib.metadata.version("torchvision")
        except importlib.metadata.PackageNotFoundError:
            version = "(unknown version)"
        why = " ".join(str(err).split())[:160]
        return (
            f"torchvision {version} is installed but does not load with torch {torch.__version__} ({why}), "
            "and transformers cannot import its models while it is there; uninstall it "
            "(`pip uninstall torchvision`) or install the torchvision build made for this torch"
        )
    return None


def _video_processor(model_type: str):
    """The family's default video processor, or None without torchvision (see _without_video)."""
    if not _has_torchvision():
        return None
    import transformers
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING_NAMES

    name = VIDEO_PROCESSOR_MAPPING_NAMES.get(model_type)
    return getattr(transformers, name)() if name else None
