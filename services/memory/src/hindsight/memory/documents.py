"""Ingestion through the API: theory documents (chunked) and prompt-history records."""

from __future__ import annotations

import asyncio
import hashlib
import io

from pydantic import BaseModel, ConfigDict, Field
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import EmbeddingCreated, canonical_json, format_utc
from hindsight.common.record_ids import doc_vector_id
from hindsight.memory.config import MemorySettings
from hindsight.memory.domain.chunking import chunk_text
from hindsight.memory.domain.records import now_utc
from hindsight.memory.embed_client import QueryEmbedder, QueryVector
from hindsight.memory.ingest import Ingestor
from hindsight.memory.storage import Storage

__all__ = ["DocumentAdded", "DocumentIngestor", "PromptAdded", "PromptCreate", "extract_text"]

SOURCE = "memory"
_EMBED_CONCURRENCY = 4

Scalar = str | int | float | bool | None


class PromptCreate(BaseModel):
    """Body of POST /v1/prompts: one prompt and the answer it got."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=100_000)
    response: str = Field(min_length=1, max_length=100_000)
    llm_model: str | None = Field(default=None, description="Which LLM answered.")
    trade_id: str | None = None
    run_id: str | None = None
    setup_id: str | None = None
    tags: dict[str, str | int | float | bool] = Field(default_factory=dict)


class DocumentAdded(BaseModel):
    """Answer of POST /v1/docs: the document's chunks as stored."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    title: str
    doc_key: str
    """What a re-upload of the same title replaces."""
    chunks: int
    ids: list[str]
    """The chunks' vector ids, in order."""
    model: str
    removed_stale_chunks: int
    """Chunks of an earlier, longer version that were removed."""


class PromptAdded(BaseModel):
    """Answer of POST /v1/prompts: the prompt's record."""

    model_config = ConfigDict(frozen=True)

    id: str
    collection: str
    model: str


def extract_text(data: bytes, *, filename: str | None, content_type: str | None) -> str:
    """Text of an upload: PDF through pypdf, anything else as UTF-8 (text, Markdown)."""
    is_pdf = data.startswith(b"%PDF") or (content_type or "").endswith("/pdf")
    if is_pdf or (filename or "").lower().endswith(".pdf"):
        try:
            reader = PdfReader(io.BytesIO(data))
            return "\n\n".join(page.extract_text() or "" for page in reader.pages)
        except (PdfReadError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"not a readable PDF: {exc}", field="file") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            "not UTF-8 text (upload text, Markdown or PDF)", field="file"
        ) from exc


def _base_metadata(vector_id: str, **extra: Scalar) -> dict[str, Scalar]:
    meta: dict[str, Scalar] = {
        "id": vector_id,
        "file_path": "",
        "run_id": None,
        "trade_id": None,
        "setup_id": None,
        "rule_version": None,
        "timestamp": format_utc(now_utc()),
        "type": "text",
        "source": SOURCE,
    }
    meta.update(extra)
    return meta


class DocumentIngestor:
    """Embeds API uploads through ``embed.query`` (tower ``text``) and stores them."""

    def __init__(
        self,
        settings: MemorySettings,
        storage: Storage,
        ingestor: Ingestor,
        embedder: QueryEmbedder,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.ingestor = ingestor
        self.embedder = embedder

    async def add_document(self, *, text: str, title: str, file_name: str | None) -> DocumentAdded:
        """Chunk, embed and store a theory document; a re-upload replaces its chunks."""
        chunks = chunk_text(
            text, size=self.settings.chunk_chars, overlap=self.settings.chunk_overlap
        )
        if not chunks:
            raise InvalidInputError("the document has no text", field="file")
        doc_key = f"theory:{title}"
        gate = asyncio.Semaphore(_EMBED_CONCURRENCY)

        async def embed(chunk: str) -> QueryVector:
            async with gate:
                return await self.embedder.embed(tower="text", text=chunk)

        vectors = await asyncio.gather(*(embed(c) for c in chunks))
        ids = [doc_vector_id(doc_key, chunk=i) for i in range(len(chunks))]
        for i, (chunk, qv, vid) in enumerate(zip(chunks, vectors, ids, strict=True)):
            meta = _base_metadata(
                vid,
                file_path=file_name or "",
                doc_type="theory",
                title=title,
                doc_key=doc_key,
                chunk=i,
                chunks=len(chunks),
                embedding_model=qv.model,
            )
            event = EmbeddingCreated.create(
                source=SOURCE,
                vector_id=vid,
                collection="theory_docs",
                modality="text",
                model=qv.model,
                embedding=qv.embedding,
                metadata=meta,
                document=chunk,
            )
            await self.ingestor.on_embedding(event)
        keep = set(ids)
        stale = [
            vid
            for vid in await self.storage.ids_with_prefix_key("theory_docs", doc_key)
            if vid not in keep
        ]
        if stale:
            await self.ingestor.remove(stale)
        return DocumentAdded(
            title=title,
            doc_key=doc_key,
            chunks=len(chunks),
            ids=ids,
            model=vectors[0].model,
            removed_stale_chunks=len(stale),
        )

    async def add_prompt(self, body: PromptCreate) -> PromptAdded:
        """Embed and store one prompt with its response in ``prompts_history``."""
        key_source = canonical_json(
            {
                "prompt": body.prompt,
                "response": body.response,
                "trade_id": body.trade_id,
                "llm_model": body.llm_model,
            }
        )
        key = "prompt:" + hashlib.sha256(key_source.encode()).hexdigest()
        vid = doc_vector_id(key)
        document = f"Prompt:\n{body.prompt}\n\nResponse:\n{body.response}"
        qv = await self.embedder.embed(tower="text", text=document)
        meta = _base_metadata(
            vid,
            run_id=body.run_id,
            trade_id=body.trade_id,
            setup_id=body.setup_id,
            doc_type="prompt",
            llm_model=body.llm_model,
            embedding_model=qv.model,
        )
        for name, value in body.tags.items():
            meta.setdefault(name, value)
        event = EmbeddingCreated.create(
            source=SOURCE,
            vector_id=vid,
            collection="prompts_history",
            modality="text",
            model=qv.model,
            embedding=qv.embedding,
            metadata=meta,
            document=document,
        )
        await self.ingestor.on_embedding(event)
        return PromptAdded(id=vid, collection="prompts_history", model=qv.model)
