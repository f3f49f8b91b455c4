"""Text out of uploaded files: plain text, Markdown, HTML (selectolax) and PDF (pypdf).

The kind is taken from the file name's extension, then from the content type; a file whose
kind cannot be told, or that does not parse, is refused with a message saying which kinds
are accepted, never stored half-read.
"""

from __future__ import annotations

import io

__all__ = ["KINDS", "UnreadableFile", "extract_text", "file_kind"]

KINDS = ("txt", "md", "html", "pdf")

_EXTENSIONS = {
    "txt": "txt",
    "text": "txt",
    "md": "md",
    "markdown": "md",
    "html": "html",
    "htm": "html",
    "pdf": "pdf",
}
_CONTENT_TYPES = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/html": "html",
    "application/pdf": "pdf",
}


class UnreadableFile(ValueError):
    """The file is not one of the accepted kinds, or its content does not parse."""


def file_kind(filename: str, content_type: str | None = None) -> str:
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    base = (content_type or "").split(";")[0].strip().lower()
    if base in _CONTENT_TYPES:
        return _CONTENT_TYPES[base]
    raise UnreadableFile(
        f"cannot tell the kind of {filename!r}: use a .txt, .md, .html or .pdf file name"
    )


def extract_text(data: bytes, kind: str) -> str:
    """The readable text of a file of `kind` (one of `KINDS`)."""
    if kind == "pdf":
        return _pdf_text(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(f"a .{kind} file must be UTF-8 text") from None
    if kind == "html":
        return _html_text(text)
    return text


def _html_text(html: str) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    for node in tree.css("script, style, noscript, template"):
        node.decompose()
    root = tree.body or tree.root
    text = root.text(separator="\n") if root is not None else ""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise UnreadableFile(f"the PDF could not be read: {exc}") from None
    return "\n\n".join(page.strip() for page in pages if page.strip())
