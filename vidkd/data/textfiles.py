"""Split, class-index and annotation files as editors save them, and paths that stay inside the dataset.

`read_lines` accepts UTF-8 (with or without a byte-order mark), UTF-16 and UTF-32 with a BOM
(Windows Notepad's "Unicode"), UTF-16 without a BOM when it is unmistakable, and, for bytes that
are not UTF-8, Latin-1; CRLF, CR and LF line endings; trailing whitespace and blank lines. What
cannot be read raises a `DatasetError` naming the file and the line.

`inside` normalises a relative path taken from such a file and refuses one that leaves its folder
(`..` past the top, an absolute path, a drive letter): a split file must not make vidkd open
/etc/passwd or quietly train on another dataset. The check is lexical (os.path.normpath), so
symlinks the user placed inside the dataset keep working.
"""

from __future__ import annotations

import codecs
import logging
import posixpath
import re
from pathlib import Path

from vidkd.errors import DatasetError

log = logging.getLogger("vidkd.data")

_NEWLINE = re.compile(r"\r\n|\r|\n")
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)


def _line_of(data: bytes, offset: int, encoding: str) -> int:
    """The 1-based line holding byte `offset` of `data` read as `encoding`."""
    head = data[:offset].decode(encoding, errors="replace")
    return len(_NEWLINE.findall(head)) + 1


def _bomless_utf16(data: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when every other byte is 0 (ASCII text saved as UTF-16 without a BOM)."""
    if len(data) < 4 or len(data) % 2:
        return None
    even, odd = data[0::2], data[1::2]
    if odd.count(0) == len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) == len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return None


def decode_text(data: bytes, path: str | Path) -> str:
    """`data` as text; DatasetError naming `path` and the line when it cannot be read."""
    for bom, encoding, name in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as exc:
                line = _line_of(data, exc.start, encoding)
                raise DatasetError(f"{path}:{line}: not valid {name} although the file starts with a {name} "
                                   f"byte-order mark ({exc.reason}); save it again as UTF-8") from None
            break
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            encoding = _bomless_utf16(data)
            if encoding:
                text = data.decode(encoding, errors="strict")
            else:
                text = data.decode("latin-1")  # never fails: every byte is a character
                log.info("%s is not UTF-8; read it as Latin-1", path)
    if "\x00" in text:
        line = len(_NEWLINE.findall(text[:text.index("\x00")])) + 1
        raise DatasetError(f"{path}:{line}: a NUL byte; this is not a text file (a binary file, or a "
                           f"UTF-16 file without a byte-order mark?); save it as UTF-8 text")
    return text


def read_text(path: str | Path, what: str, hint: str = "see docs/data.md") -> str:
    """A text file (split, annotation, label list) as editors save it, decoded (see `decode_text`).

    DatasetError (one line) when the file is missing, unreadable or not text; `hint` is appended
    to the missing-file message.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"missing {what} {path}; {hint}") from None
    except IsADirectoryError:
        raise DatasetError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return decode_text(data, path)


def read_lines(path: str | Path, what: str, hint: str = "see docs/data.md") -> list[tuple[int, str]]:
    """The non-blank lines of a text file as (1-based line number, stripped text).

    DatasetError (one line) when the file is missing, unreadable or not text; `hint` is appended
    to the missing-file message.
    """
    text = read_text(path, what, hint)
    out = []
    for n, line in enumerate(_NEWLINE.split(text), 1):
        line = line.replace("\ufeff", "").strip()
        if line:
            out.append((n, line))
    return out


def inside(rel: str, where: str, folder: str) -> str:
    """`rel` (a path from line `where` of a split or annotation file, relative to `folder`), normalised
    with '/' separators; DatasetError when it is absolute or leads out of `folder`.

    Backslashes count as separators (a list written on Windows). The check is lexical, like
    os.path.normpath: a symlink inside the folder may point anywhere.
    """
    if "\\" in rel:
        rel = rel.replace("\\", "/")
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        raise DatasetError(f"{where}: {rel!r} is an absolute path; paths in this file are relative to {folder} "
                           f"and must stay inside it")
    if ".." in rel or "./" in rel or "//" in rel:  # the common case, 'Class/v_Class_g01_c01.avi', needs no normalising
        norm = posixpath.normpath(rel)
        if norm == ".." or norm.startswith("../"):
            raise DatasetError(f"{where}: {rel!r} leads outside {folder}; paths in this file must stay inside it")
        return norm
    return rel
