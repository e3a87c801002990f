"""Header fields written so that every mail program reads back exactly the text that was meant:
free text (Subject) and address lists (From, To) with any name, folded into lines, with RFC 2047
encoded-words where the text is not plain ASCII.

Why not the email package's folder (Python 3.11): it leaves the space between two encoded-words
outside them, where decoders drop it (RFC 2047 6.2: two words glued, issue 8 case 5); its legacy
``Header`` makes one encoded-word of a whole run of text without spaces (1,000+ characters for 120
CJK characters or emoji, against 75 in RFC 2047 2 and lines of at most 998 in RFC 5322 2.1.1).

The rules kept here:

- an encoded-word is at most 75 characters, and a line that holds one at most 76 (RFC 2047 2);
  other lines at most 78 (RFC 5322 2.1.1, 2.2.3): in free text a word longer than a line is
  encoded so that it can be folded, in a display name it stays whole (at most 998); words are
  split between characters, never inside one character's UTF-8 bytes (RFC 2047 5 (3)), at a space
  or else outside a character cluster (an accent, an emoji sequence) where one is near;
- decoders ignore whitespace between two encoded-words (RFC 2047 6.2), so a run of words that need
  encoding becomes encoded-words that carry the spaces inside them; whitespace beside plain text
  stays as written;
- in a display name (a phrase, RFC 5322 3.2.5) an encoded-word holds only ``[A-Za-z0-9!*+/-]``
  and ``=XX``/``_`` (RFC 2047 5 (3)); an all-ASCII name that is not all atoms (``"``, ``\\``,
  ``(``, ``,``, ``:``, ``;``, ``<``, ``.``, two spaces) is one quoted-string (RFC 5322 3.2.4);
  in a name with non-ASCII text such words are encoded, since Gmail has shown only the quoted part
  of a name that mixes the two (jstedfast/MimeKit issue 170); nothing that looks like an encoded-word (``=?``) is left unencoded,
  since mail programs would decode it into other text.

One limit of Python 3.11's reader (not of mail programs): in a display name it keeps a space
between two encoded-words (CPython gh-128110, fixed upstream) and collapses a space and the
whitespace after it inside one. A run of words to encode is therefore one encoded-word where it fits
(on a line of its own if need be), and atoms stay plain between runs, so only a run longer than
one encoded-word, or spaces typed twice beside non-ASCII text, read differently there.
"""

import base64
import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache

#: (whitespace before it, the text, whether the text is to be encoded)
Item = tuple[str, str, bool]

MAX_LINE = 78  # RFC 5322 2.1.1
_MAX_EW_LINE = 76  # RFC 2047 2: a line holding an encoded-word
_MAX_EW = 75  # RFC 2047 2
_Q_PREFIX, _B_PREFIX, _SUFFIX = "=?utf-8?q?", "=?utf-8?b?", "?="
_EW_OVERHEAD = len(_Q_PREFIX) + len(_SUFFIX)
_MAX_PLAIN_WORD = 900  # RFC 5322 2.1.1: a line never exceeds 998; a longer word is encoded
_MIN_CHUNK = 4  # characters worth starting on a line already holding text

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=^_`{|}~-]+"  # atext (RFC 5322 3.2.3) without "?": no =?..?= in it
_ATOM = re.compile(_ATEXT)
_ATOMS = re.compile(rf"{_ATEXT}(?: {_ATEXT})*")
_SPACES = re.compile(r"( +)")
_PIECES = re.compile(r"( *)([^ ]+)")
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_ZWJ = "\u200d"


def unstructured(name: str, text: str, linesep: str = "\r\n", max_line: int = MAX_LINE) -> str:
    """``name: text`` folded (a Subject, RFC 5322 3.2.5 unstructured), ending in ``linesep``.

    Plain words (printable ASCII, at most a line long) stay as they are, with the spaces between them
    as written; a run of other words is encoded with its inner spaces, so the value reads back
    exactly, also with leading, trailing and repeated spaces (those at the ends inside encoded-words:
    readers strip them from plain text).
    """
    if not text:
        return f"{name}:{linesep}"
    return _fold(name, _text_items(text, max_line - len(name) - 2, max_line), linesep, max_line)


def addresses(
    name: str, mailboxes: Sequence[tuple[str, str]], linesep: str = "\r\n", max_line: int = MAX_LINE
) -> str:
    """``name: Display Name <addr>, ...`` folded, ending in ``linesep``. ``mailboxes`` are
    (display name, addr-spec) pairs; an empty display name gives the bare address. The addr-spec is
    written as it is: ASCII, or UTF-8 for a mail sent with SMTPUTF8 (RFC 6532 3.2).
    """
    items: list[Item] = []
    for index, (display, addr_spec) in enumerate(mailboxes):
        entry = (
            [*_phrase_items(display), (" ", f"<{addr_spec}>", False)]
            if display
            else [(" ", addr_spec, False)]
        )
        if index < len(mailboxes) - 1:
            before, last, _ = entry[-1]
            entry[-1] = (before, last + ",", False)
        items += entry
    return _fold(name, items, linesep, max_line)


def url_list(name: str, value: str, linesep: str = "\r\n", max_line: int = MAX_LINE) -> str:
    """A list of ``<URL>`` entries (List-Unsubscribe, RFC 2369) folded only after a comma and never
    encoded: mail programs do not decode encoded-words there, and a URL has no space to fold at."""
    entries = [entry.strip() for entry in value.split(",")]
    return _fold(
        name,
        [(" ", entry + ",", False) for entry in entries[:-1]] + [(" ", entries[-1], False)],
        linesep,
        max_line,
    )


def _text_items(text: str, first_room: int, max_line: int) -> list[Item]:
    parts = _SPACES.split(text)
    words, spaces = parts[0::2], parts[1::2]  # the first and last word are "" where text has spaces there
    # A plain word must fit on a line of its own (after the field name, or after its spaces); a
    # longer one is encoded, so that it can be folded.
    rooms = [first_room] + [max_line - len(space) for space in spaces]
    plain = [_plain_text_word(word, room) for word, room in zip(words, rooms, strict=True)]
    if spaces and not words[0]:  # kept inside the first encoded-word: readers strip leading spaces
        plain[1] = False
    if spaces and not words[-1]:
        plain[-2] = False
    return _runs(words, spaces, plain, separate=lambda space: space)


def _runs(
    words: list[str], spaces: list[str], plain: list[bool], separate: Callable[[str], str]
) -> list[Item]:
    """Items of words (``spaces[i]`` after ``words[i]``): a plain word as it is, a run of the others
    as one text to encode with the spaces inside it. ``separate`` gives what a space between a plain
    word and another word is written as."""
    items: list[Item] = []
    run: list[str] = []
    run_before = " "
    for index, word in enumerate(words):
        space = spaces[index - 1] if index else " "
        if plain[index]:
            if run:
                items.append((run_before, "".join(run), True))
                run = []
            items.append((separate(space) if index else " ", word, False))
        elif run:
            run += [space, word]
        else:
            run_before, run = (separate(space) if index else " "), [word]
    if run:
        items.append((run_before, "".join(run), True))
    return items


def _plain_text_word(word: str, room: int) -> bool:
    return bool(word) and len(word) <= room and word.isascii() and word.isprintable() and "=?" not in word


def _phrase_items(display: str) -> list[Item]:
    """A display name (RFC 5322 3.2.5 phrase): atoms as they are; an ASCII name that is not all atoms
    as one quoted-string; else atoms with runs of encoded-words between them. Between two words
    exactly one space (it reads as one); other spaces go inside a quoted-string or an encoded-word.

    No quoted-string beside an encoded-word: Gmail has shown only the quoted part of such a name.
    """
    if (
        len(display) <= _MAX_PLAIN_WORD
        and display.isascii()
        and display.isprintable()
        and "=?" not in display
    ):
        if _ATOMS.fullmatch(display):
            return [(" ", word, False) for word in display.split(" ")]
        return _quoted_items(display)
    parts = _SPACES.split(display)
    words, spaces = parts[0::2], parts[1::2]
    atom = [_ATOM.fullmatch(word) is not None and len(word) <= _MAX_PLAIN_WORD for word in words]
    for index, space in enumerate(spaces):
        if len(space) > 1 or not words[index] or not words[index + 1]:
            atom[index] = atom[index + 1] = False  # the spaces go into an encoded-word with them
    return _runs(words, spaces, atom, separate=lambda space: " ")


def _quoted_items(text: str) -> list[Item]:
    """A quoted-string (RFC 5322 3.2.4) in pieces that may be folded at its spaces: the CRLF of a
    fold inside it is invisible, the space after it is kept."""
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    pieces = _PIECES.findall(quoted)
    return [(" " if index == 0 else space, piece, False) for index, (space, piece) in enumerate(pieces)]


def _fold(name: str, items: list[Item], linesep: str, max_line: int) -> str:
    lines = [f"{name}:"]
    has_text = False  # whether the last line holds more than the field name
    has_ew = False
    for before, text, encode in items:
        if not encode:
            limit = _MAX_EW_LINE if has_ew else max_line
            if has_text and len(lines[-1]) + len(before) + len(text) > limit:
                lines.append("")
                has_ew = False
            lines[-1] += before + text
            has_text = True
            continue
        q_length, b_length = _q_length(text), _b_length(text)
        encoding = "b" if b_length < q_length else "q"
        whole = _EW_OVERHEAD + min(q_length, b_length)
        room = min(max_line, _MAX_EW_LINE) - len(lines[-1]) - len(before)
        if has_text and whole > room and whole <= min(_MAX_EW, _MAX_EW_LINE - len(before)):
            # One encoded-word on the next line rather than two: fewer words for readers to join.
            lines.append("")
            has_text = has_ew = False
        start = 0
        while start < len(text):
            room = min(_MAX_EW, min(max_line, _MAX_EW_LINE) - len(lines[-1]) - len(before))
            end = _chunk_end(text, start, room, encoding)
            if has_text and end - start < min(_MIN_CHUNK, len(text) - start):
                lines.append("")
                has_text = has_ew = False
                continue
            end = max(end, start + 1)  # a line too short for any: never reached with our field names
            lines[-1] += before + _encoded_word(text[start:end], encoding)
            has_text = has_ew = True
            before = " "  # between two encoded-words: ignored by decoders (RFC 2047 6.2)
            start = end
    return linesep.join(lines) + linesep


def _chunk_end(text: str, start: int, room: int, encoding: str) -> int:
    """The end of the longest text[start:end] whose encoded-word is at most ``room`` characters,
    backed off to just after a space, or else to the start of a character cluster, when one is near."""
    budget = room - _EW_OVERHEAD
    end = start
    if encoding == "q":
        used = 0
        while end < len(text):
            used += len(_q_char(text[end]))
            if used > budget:
                break
            end += 1
    else:
        limit = budget // 4 * 3  # bytes that fit as base64
        used = 0
        while end < len(text):
            used += len(text[end].encode())
            if used > limit:
                break
            end += 1
    if end < len(text):
        space = text.rfind(" ", start, end)
        if space >= start + (end - start) // 2:  # at a word's end where one is near
            return space + 1
        cut = end
        while cut > start and _continues_cluster(text, cut):
            cut -= 1
        if cut > start:
            end = cut
    return end


def _continues_cluster(text: str, index: int) -> bool:
    char = text[index]
    return (
        unicodedata.combining(char) != 0
        or char in "\u200d\ufe0e\ufe0f"  # zero-width joiner, variation selectors
        or "\U0001f3fb" <= char <= "\U0001f3ff"  # skin tone modifier
        or "\U000e0020" <= char <= "\U000e007f"  # tag characters (flag sequences)
        or text[index - 1] == _ZWJ
    )


def _encoded_word(text: str, encoding: str) -> str:
    if encoding == "q":
        return _Q_PREFIX + "".join(_q_char(char) for char in text) + _SUFFIX
    return _B_PREFIX + base64.b64encode(text.encode()).decode("ascii") + _SUFFIX


@lru_cache(maxsize=4096)
def _q_char(char: str) -> str:
    """One character in the "Q" encoding allowed in a phrase (RFC 2047 4.2, 5 (3)): ``_`` for a
    space, the character itself when it is one of ``[A-Za-z0-9!*+/-]``, else ``=XX`` per UTF-8 byte."""
    if char == " ":
        return "_"
    if char in _Q_SAFE:
        return char
    return "".join(f"={byte:02X}" for byte in char.encode())


def _q_length(text: str) -> int:
    return sum(len(_q_char(char)) for char in text)


def _b_length(text: str) -> int:
    return (len(text.encode()) + 2) // 3 * 4
