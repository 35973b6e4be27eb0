#!/usr/bin/env python
"""Build a Spanish→English corpus of software messages (train/dev/test Parquet, columns ``id, src, tgt``).

The source is Debian's compiled gettext catalogs: each package in ``PACKAGES`` is fetched with
``apt-get download`` into a cache folder (a ``.deb`` already there is reused), its file list is read
with ``dpkg-deb -c`` and, if it holds ``…/es/LC_MESSAGES/*.mo`` catalogs, it is unpacked with
``dpkg-deb -x`` into a temporary folder (nothing is installed; no root needed beyond what
``apt-get download`` wants). Only the plain ``es`` locale is read (not ``es_ES``, ``es_MX`` …).
Besides ``/usr/share/locale`` this finds LibreOffice's catalogs under ``program/resource/es``.

Each ``.mo`` file is parsed with the standard library (``struct``; Python's ``gettext`` module is not
enough: it drops the English plural ``msgid_plural`` and the "system-dependent" messages holding
``%<PRIu64>``, which this parser rebuilds). What becomes a pair:

* target = the English ``msgid``, source = the Spanish ``msgstr``, both exactly as in the catalog:
  placeholders (``%s``, ``%1$d``, ``{name}``), markup (``<b>``), accelerators (``_Open``), real
  newlines and surrounding spaces are kept byte for byte (the corpus tests placeholder
  preservation, so nothing is cleaned or stripped);
* ``msgctxt`` is removed from the text and kept in the id; the header (empty msgid) is skipped;
* plural entries give two pairs: singular ``msgid`` ↔ the Spanish form for n = 1 and
  ``msgid_plural`` ↔ the form for n = 2 (form indices from the catalog's ``Plural-Forms``, so
  catalogs with a third "millions" form still pair the ordinary plural);
* fuzzy and untranslated entries are already absent: ``msgfmt`` leaves them out of a ``.mo``. An
  empty form is skipped all the same;
* a pair whose msgstr equals its msgid is kept only if the text outside placeholders and markup
  (``find_spans``) has a letter: "Bluetooth" → "Bluetooth" is a translation, "%s: %s" or "---" are not;
* translator credits (msgid ``translator-credits``, KDE's ``Your names``/``Your emails``) and
  pairs with either side over ``MAX_CHARS`` (1,000) characters are dropped.

ids are ``<package>/<domain>/<index>`` (``index``: the entry's position in the catalog), plus
``/plural`` for the plural pair and ``@<msgctxt>`` when the entry has a context (newlines in a context
written ``\\n``); they are unique across the corpus.

Split, by catalog and never by message: a catalog's domain (the ``.mo`` name: ``gimp20``,
``coreutils``, ``sw``) picks its split, so a program's messages stay together. Domains are walked in
order of ``sha1(domain)``; each goes to test while it fits in 5 % of all pairs, else to dev while it
fits in 5 %, else to train. The rule is deterministic, but unlike the Bible corpus's it depends on
the package list (catalog sizes set how far the quotas fill). Exact duplicate (src, tgt) pairs are
then removed with polars keeping the first in the order test, dev, train, then package list order,
catalog path, entry index: a pair in both a test and a train catalog stays in test only. Finally a
train pair whose src or tgt also occurs as a src or tgt of test (so "Cancelar"/"Cancel" when a
test catalog has them) is removed, so test sentences are never seen in training; how many is printed.
Dev is not filtered against train or test.

Usage::

    python examples/gettext-es-en/prepare.py                  # default packages, write to --out
    python examples/gettext-es-en/prepare.py --inspect        # which packages hold es catalogs
    python examples/gettext-es-en/prepare.py --packages coreutils grep sed --min-packages 3 --out /tmp/g

``--out`` defaults to ``shared/data/gettext-es-en`` next to the repository checkout, i.e.
``<this file>/../../../shared/data/gettext-es-en`` (resolved from the script's location). Any fsspec
URL works for ``--out``. A JSON summary (packages, catalogs, pairs per split, placeholder share,
outputs) is printed on stdout at the end; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gettext
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

# Make ``s2s_core`` importable when the script is run from a plain checkout (not pip-installed).
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from s2s_core.storage import join  # noqa: E402
from s2s_core.text.prepare import write_parquet  # noqa: E402
from s2s_core.text.spans import find_spans  # noqa: E402

DEFAULT_OUT = REPO_ROOT.parent / "shared" / "data" / "gettext-es-en"  # next to the checkout
DEFAULT_CACHE = Path("~/.cache/s2s/debian-debs").expanduser()
SPLITS = ("train", "dev", "test")
TEST_SHARE = DEV_SHARE = 0.05
MAX_CHARS = 1000
MIN_PACKAGES = 30
LOCALE = "es"

# Debian bookworm binary packages with large Spanish catalogs: each was checked with ``apt-cache show``
# and ``dpkg-deb -c`` (``--inspect`` repeats the check). Grouped by where the messages come from; the
# comments give the es .mo bytes of the larger ones. Not there: ``gimp`` (its catalogs are in
# gimp-data), ``locales`` (libc's are in libc-l10n), ``gdb``, ``dpkg-dev``, ``kdevelop``, ``kmymoney``,
# ``konversation``, ``gparted``, ``vim-common``, ``transmission-common`` (no es catalogs).
PACKAGES: tuple[str, ...] = (
    # Office, graphics and other big applications: the largest catalogs (LibreOffice 3.2 MB,
    # Inkscape 0.9 MB, GIMP 0.8 MB, Gramps, GnuCash, VLC 0.6 MB each), long UI and help strings.
    "libreoffice-l10n-es", "inkscape", "gimp-data", "gramps", "gnucash-common", "vlc-l10n", "darktable",
    "audacity-data", "gnumeric-common", "filezilla-common", "pidgin-data", "hexchat-common",
    "claws-mail-i18n", "geany-common", "anjuta-common", "vim-runtime", "mc-data",
    # A game with a huge catalog (Freeciv 1.5 MB: rulesets, help texts, %s-heavy messages).
    "freeciv-data",
    # GNOME/GTK/Xfce applications and libraries: dialogs, menus, Pango markup, mnemonics (_Open).
    "libgtk-3-common", "libgtk2.0-common", "libgtk-4-common", "libglib2.0-data", "gnome-control-center-data",
    "evolution-common", "evolution-data-server-common", "nautilus-data", "gnome-shell-common",
    "gnome-builder", "gnome-software-common", "epiphany-browser-data", "rhythmbox-data", "gedit-common",
    "evince-common", "brasero-common", "shotwell-common", "gthumb-data", "gnome-disk-utility", "gnote",
    "network-manager-gnome", "aisleriot", "thunar-data",
    # KDE applications and frameworks (Qt programs, but Debian ships their gettext catalogs):
    # digiKam 1.2 MB, Krita 0.8 MB, K3b, Plasma, KDevelop, KMyMoney.
    "digikam-data", "krita-l10n", "kmymoney-common", "kdevelop-l10n", "k3b-i18n", "plasma-workspace-data",
    "kdenlive-data", "kio", "plasma-desktop-data", "konversation-data", "kmail", "kate5-data",
    "ktexteditor-data", "krusader", "kwin-data", "okular", "korganizer", "dolphin", "konsole",
    # GNU toolchain and core utilities: printf formats, options, paths (binutils 1.1 MB, gcc 1.1 MB).
    "binutils-common", "gcc-12-locales", "libc-l10n", "coreutils", "grep", "sed", "tar", "findutils",
    "diffutils", "wget", "bash", "gettext", "gettext-base", "gawk", "make", "bison", "texinfo", "git",
    "nano", "sudo", "man-db",
    # System administration: disks, users, init, encryption.
    "util-linux-locales", "e2fsprogs-l10n", "libparted-i18n", "systemd", "gnupg-l10n", "gparted-common",
    # Debian's own package tools.
    "apt", "libapt-pkg6.0", "dpkg", "libdpkg-perl", "aptitude-common", "synaptic", "debconf-i18n",
    # Networking, mail, multimedia and hardware libraries.
    "network-manager", "flatpak", "neomutt", "libsane-common", "libgphoto2-l10n", "libgstreamer1.0-0",
    "gstreamer1.0-plugins-good",
)

TRANSLATOR_CREDITS = frozenset({"translator-credits", "translator_credits", "Your names", "Your emails",
                                "NAME OF TRANSLATORS", "EMAIL OF TRANSLATORS"})
ES_CATALOG = re.compile(rf"(?:^|/){LOCALE}/LC_MESSAGES/[^/]+\.mo$")
CHARSET = re.compile(r"charset=\s*([^\s;]+)", re.IGNORECASE)
PLURAL_FORMS = re.compile(r"^Plural-Forms:.*?plural\s*=\s*([^;\n]+)", re.IGNORECASE | re.MULTILINE)
MO_MAGIC = 0x950412DE


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# The .mo format (GNU gettext's gmo.h), read with struct.


@dataclass(frozen=True)
class MoFile:
    """A compiled catalog: its header (the empty msgid's translation) and (msgid, msgstr) in file order.

    A msgid may hold ``ctxt\\x04`` before the text and ``singular\\x00plural``; a plural msgstr holds
    its forms joined by ``\\x00``.
    """

    header: str
    entries: list[tuple[str, str]]


def _mo_strings(data: bytes) -> tuple[list[tuple[bytes, bytes]], str]:
    """The raw (msgid, msgstr) byte pairs of a .mo file, static then system-dependent ones, and the
    byte order format ("<" or ">")."""
    if len(data) < 28:
        raise ValueError("too short for a .mo file")
    (magic,) = struct.unpack("<I", data[:4])
    order = "<" if magic == MO_MAGIC else ">" if struct.unpack(">I", data[:4])[0] == MO_MAGIC else ""
    if not order:
        raise ValueError("not a .mo file (bad magic number)")
    revision, count, orig_at, trans_at = struct.unpack(order + "4I", data[4:20])
    if revision >> 16 > 1:
        raise ValueError(f"unknown .mo major revision {revision >> 16}")

    def string(table: int, i: int) -> bytes:
        length, offset = struct.unpack(order + "2I", data[table + 8 * i: table + 8 * i + 8])
        if offset + length > len(data):
            raise ValueError("string table points past the end of the file")
        return data[offset: offset + length]

    pairs = [(string(orig_at, i), string(trans_at, i)) for i in range(count)]
    if revision & 0xFFFF >= 1 and len(data) >= 48:
        # Messages with <inttypes.h> macros (``%<PRIu64>``) live only in this table: static pieces
        # interleaved with named segments ("PRIu64", or "I" for glibc's %I flag).
        n_segments, segments_at, n_sysdep, orig_sys_at, trans_sys_at = struct.unpack(
            order + "5I", data[28:48])
        names = []
        for i in range(n_segments):
            length, offset = struct.unpack(order + "2I", data[segments_at + 8 * i: segments_at + 8 * i + 8])
            name = data[offset: offset + length].rstrip(b"\0")
            names.append(name if name == b"I" else b"<" + name + b">")

        def sysdep(table: int, i: int) -> bytes:
            (at,) = struct.unpack(order + "I", data[table + 4 * i: table + 4 * i + 4])
            (offset,) = struct.unpack(order + "I", data[at: at + 4])
            pieces, at = [], at + 4
            while True:
                size, ref = struct.unpack(order + "2I", data[at: at + 8])
                pieces.append(data[offset: offset + size])
                offset, at = offset + size, at + 8
                if ref == 0xFFFFFFFF:
                    break
                pieces.append(names[ref])
            return b"".join(pieces).removesuffix(b"\0")

        pairs += [(sysdep(orig_sys_at, i), sysdep(trans_sys_at, i)) for i in range(n_sysdep)]
    return pairs, order


def read_mo(data: bytes) -> MoFile:
    """Parse a .mo file; strings are decoded with the header's charset (UTF-8 when it names none)."""
    raw, _ = _mo_strings(data)
    header_bytes = next((msgstr for msgid, msgstr in raw if msgid == b""), b"")
    match = CHARSET.search(header_bytes.decode("ascii", "replace"))
    charset = match.group(1) if match and match.group(1).upper() != "CHARSET" else "utf-8"
    entries = [(msgid.decode(charset), msgstr.decode(charset)) for msgid, msgstr in raw]
    return MoFile(header_bytes.decode(charset), entries)


def plural_indices(header: str) -> tuple[int, int]:
    """The msgstr form used for n = 1 and for n = 2, from the header's ``Plural-Forms``."""
    match = PLURAL_FORMS.search(header)
    if match:
        try:
            rule: Callable[[int], int] = gettext.c2py(match.group(1).strip())
            return rule(1), rule(2)
        except (ValueError, RecursionError):
            pass
    return 0, 1


# ---------------------------------------------------------------------------------------------------
# Catalog entries → pairs.


def has_letter_outside_spans(text: str) -> bool:
    """Whether ``text`` has a letter that is not part of a placeholder, tag, option, path …"""
    at, outside = 0, []
    for span in find_spans(text):
        outside.append(text[at:span.start])
        at = span.end
    outside.append(text[at:])
    return any(ch.isalpha() for ch in "".join(outside))


def catalog_pairs(mo: MoFile) -> tuple[list[tuple[int, bool, str | None, str, str]], Counter[str]]:
    """(entry index, is the plural pair, context, src, tgt) for each kept pair of a catalog, in file
    order, and the skipped pairs counted by reason."""
    singular_form, plural_form = plural_indices(mo.header)
    pairs: list[tuple[int, bool, str | None, str, str]] = []
    skipped: Counter[str] = Counter()
    for index, (msgid, msgstr) in enumerate(mo.entries):
        if msgid == "":
            continue  # the header
        context: str | None = None
        if "\x04" in msgid:
            context, msgid = msgid.split("\x04", 1)
        if "\x00" in msgid:
            singular, plural = msgid.split("\x00", 1)
            forms = msgstr.split("\x00")
            candidates = [(False, singular, forms[singular_form] if singular_form < len(forms) else ""),
                          (True, plural, forms[plural_form] if plural_form < len(forms) else "")]
        else:
            candidates = [(False, msgid, msgstr)]
        for is_plural, english, spanish in candidates:
            if english in TRANSLATOR_CREDITS or context == "NAME OF TRANSLATORS":
                skipped["translator credits"] += 1
            elif not spanish or not english:
                skipped["untranslated"] += 1
            elif len(spanish) > MAX_CHARS or len(english) > MAX_CHARS:
                skipped[f"over {MAX_CHARS} chars"] += 1
            elif spanish == english and not has_letter_outside_spans(english):
                skipped["identical, no words"] += 1
            else:
                pairs.append((index, is_plural, context, spanish, english))
    return pairs, skipped


def find_catalogs(root: Path) -> list[Path]:
    """The ``es/LC_MESSAGES/*.mo`` files under an unpacked package, sorted by path. Symbolic links are
    skipped: they point at another catalog of the package (or, absolute, outside the tree)."""
    found = {p.relative_to(root).as_posix(): p for p in root.rglob("*.mo")}
    return [p for rel, p in sorted(found.items())
            if ES_CATALOG.search(rel) and not p.is_symlink() and p.is_file()]


@dataclass
class Harvest:
    """Rows from a set of packages (``package, domain, id, src, tgt`` in stable order) and counts."""

    rows: list[tuple[str, str, str, str, str]]
    catalogs: list[str]
    skipped: Counter[str]
    bad_catalogs: dict[str, str]


def harvest_tree(package: str, root: Path, into: Harvest | None = None) -> Harvest:
    """Add the pairs of every Spanish catalog under ``root`` (a package unpacked by ``dpkg-deb -x``)."""
    harvest = into if into is not None else Harvest([], [], Counter(), {})
    seen: Counter[str] = Counter()  # entries already numbered per domain: a domain twice in a package
    for path in find_catalogs(root):
        domain = path.stem
        where = f"{package}:{path.relative_to(root).as_posix()}"
        try:
            mo = read_mo(path.read_bytes())
        except (ValueError, UnicodeDecodeError, LookupError, struct.error) as err:
            harvest.bad_catalogs[where] = str(err)
            log(f"  skipped unreadable catalog {where}: {err}")
            continue
        pairs, skipped = catalog_pairs(mo)
        offset = seen[domain]
        seen[domain] += len(mo.entries)
        harvest.catalogs.append(where)
        harvest.skipped.update(skipped)
        for index, is_plural, context, src, tgt in pairs:
            row_id = f"{package}/{domain}/{index + offset}" + ("/plural" if is_plural else "")
            if context is not None:
                row_id += "@" + context.replace("\n", "\\n")
            harvest.rows.append((package, domain, row_id, src, tgt))
    return harvest


# ---------------------------------------------------------------------------------------------------
# Corpus: split by catalog, dedupe, keep test text out of train.


def domain_hash(domain: str) -> int:
    return int(hashlib.sha1(domain.encode("utf-8")).hexdigest(), 16)


def assign_splits(sizes: dict[str, int], test_share: float = TEST_SHARE,
                  dev_share: float = DEV_SHARE) -> dict[str, str]:
    """Domain → split: in sha1 order, test while the domain fits in ``test_share`` of all pairs, then
    dev while it fits in ``dev_share``, else train."""
    total = sum(sizes.values())
    quota = {"test": test_share * total, "dev": dev_share * total}
    filled = {"test": 0, "dev": 0}
    splits = {}
    for domain in sorted(sizes, key=lambda d: (domain_hash(d), d)):
        n = sizes[domain]
        name = next((s for s in ("test", "dev") if filled[s] + n <= quota[s]), "train")
        if name != "train":
            filled[name] += n
        splits[domain] = name
    return splits


@dataclass
class Corpus:
    parts: dict[str, pl.DataFrame]
    domain_split: dict[str, str]
    before_dedupe: int
    duplicates: int
    train_overlap_removed: int


def build_corpus(rows: Sequence[tuple[str, str, str, str, str]], test_share: float = TEST_SHARE,
                 dev_share: float = DEV_SHARE) -> Corpus:
    """Split ``(package, domain, id, src, tgt)`` rows by domain, drop exact duplicate pairs (first kept
    in the order test, dev, train, then row order) and train pairs whose text occurs in test."""
    schema = {"package": pl.String, "domain": pl.String, "id": pl.String, "src": pl.String, "tgt": pl.String}
    df = pl.DataFrame(list(rows), schema=schema, orient="row").with_row_index("order")
    sizes = dict(Counter(df["domain"].to_list()))
    domain_split = assign_splits(sizes, test_share, dev_share)
    priority = {"test": 0, "dev": 1, "train": 2}
    df = df.with_columns(
        pl.col("domain").replace_strict(domain_split, return_dtype=pl.String).alias("split"))
    deduped = (df.with_columns(pl.col("split").replace_strict(priority, return_dtype=pl.Int8).alias("rank"))
               .sort(["rank", "order"])
               .unique(subset=["src", "tgt"], keep="first", maintain_order=True))
    if deduped["id"].n_unique() != deduped.height:
        raise RuntimeError("ids are not unique")  # cannot happen: ids carry package, domain and index
    parts = {name: deduped.filter(pl.col("split") == name).sort("order") for name in SPLITS}
    test = parts["test"]
    leaked = pl.col("src").is_in(test["src"].implode()) | pl.col("tgt").is_in(test["tgt"].implode())
    train = parts["train"]
    parts["train"] = train.filter(~leaked)
    return Corpus(
        parts={name: part.select("id", "src", "tgt") for name, part in parts.items()},
        domain_split=domain_split,
        before_dedupe=df.height,
        duplicates=df.height - deduped.height,
        train_overlap_removed=train.height - parts["train"].height,
    )


def has_spans(texts: Iterable[str]) -> list[bool]:
    return [bool(find_spans(t)) for t in texts]


def placeholder_share(frame: pl.DataFrame) -> float | None:
    """Share of pairs whose src or tgt holds a placeholder or markup span (``find_spans``)."""
    if frame.height == 0:
        return None
    flags = [a or b for a, b in zip(has_spans(frame["src"]), has_spans(frame["tgt"]), strict=True)]
    return round(sum(flags) / len(flags), 4)


# ---------------------------------------------------------------------------------------------------
# Debian packages.


def run_tool(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        sys.exit(f"{command[0]} not found: this script needs a Debian/Ubuntu machine with apt and dpkg")


def failure(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or [f"exit {result.returncode}"])[-1]


def cached_deb(package: str, cache: Path) -> Path | None:
    debs = sorted(cache.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def fetch(package: str, cache: Path) -> Path:
    """The package's .deb in ``cache``, downloaded with ``apt-get download`` unless already there."""
    deb = cached_deb(package, cache)
    if deb is not None:
        return deb
    result = run_tool(["apt-get", "download", package], cwd=cache)
    deb = cached_deb(package, cache)
    if result.returncode != 0 or deb is None:
        raise LookupError(f"apt-get download {package}: {failure(result)}")
    return deb


def es_catalog_sizes(deb: Path) -> dict[str, int]:
    """Path → size of the Spanish catalogs a .deb holds, from ``dpkg-deb -c`` (nothing extracted)."""
    result = run_tool(["dpkg-deb", "-c", str(deb)])
    if result.returncode != 0:
        raise LookupError(f"dpkg-deb -c {deb.name}: {failure(result)}")
    sizes = {}
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        fields = line.split(None, 5)  # mode owner size date time path
        if len(fields) == 6 and fields[0].startswith("-") and ES_CATALOG.search(fields[5]):
            sizes[fields[5].removeprefix("./")] = int(fields[2])
    return sizes


def harvest_package(package: str, deb: Path, harvest: Harvest) -> None:
    with tempfile.TemporaryDirectory(prefix=f"s2s-{package}-") as tmp:
        result = run_tool(["dpkg-deb", "-x", str(deb), tmp])
        if result.returncode != 0:
            raise LookupError(f"dpkg-deb -x {deb.name}: {failure(result)}")
        harvest_tree(package, Path(tmp), harvest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT), help="output directory or URL (default: %(default)s)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="where downloaded .deb files are kept and reused (default: %(default)s)")
    parser.add_argument("--packages", nargs="+", metavar="PKG", default=list(PACKAGES),
                        help="Debian packages to read instead of the built-in list")
    parser.add_argument("--min-packages", type=int, default=MIN_PACKAGES,
                        help="fail if fewer packages yield catalogs (default: %(default)s)")
    parser.add_argument("--inspect", action="store_true",
                        help="only download and list each package's es catalogs (dpkg-deb -c)")
    parser.add_argument("--no-write", action="store_true", help="build without writing")
    args = parser.parse_args(argv)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        sys.exit("apt-get and dpkg-deb are needed (a Debian/Ubuntu machine)")

    started = time.monotonic()
    args.cache.mkdir(parents=True, exist_ok=True)
    harvest = Harvest([], [], Counter(), {})
    failed: dict[str, str] = {}
    used: list[str] = []
    inspected: dict[str, int] = {}
    for number, package in enumerate(dict.fromkeys(args.packages), 1):
        try:
            deb = fetch(package, args.cache)
            sizes = es_catalog_sizes(deb)
            if not sizes:
                raise LookupError(f"{deb.name} holds no {LOCALE}/LC_MESSAGES/*.mo")
            if args.inspect:
                inspected[package] = sum(sizes.values())
                log(f"[{number}/{len(args.packages)}] {package}: {len(sizes)} catalogs, "
                    f"{sum(sizes.values()) / 1e3:.0f} kB ({deb.stat().st_size / 1e6:.1f} MB .deb)")
                continue
            before = len(harvest.rows)
            harvest_package(package, deb, harvest)
            used.append(package)
            log(f"[{number}/{len(args.packages)}] {package}: {len(sizes)} catalogs, "
                f"{len(harvest.rows) - before} pairs")
        except LookupError as err:
            failed[package] = str(err)
            log(f"[{number}/{len(args.packages)}] {package}: FAILED, {err}")
    if args.inspect:
        print(json.dumps({"es_mo_bytes": dict(sorted(inspected.items(), key=lambda kv: -kv[1])),
                          "failed": failed}, indent=2, ensure_ascii=False))
        return 0
    if len(used) < args.min_packages:
        sys.exit(f"only {len(used)} packages yielded Spanish catalogs (need {args.min_packages}); "
                 f"failed: {json.dumps(failed, indent=2)}")

    corpus = build_corpus(harvest.rows)
    parts = corpus.parts
    log(f"{corpus.before_dedupe} pairs from {len(harvest.catalogs)} catalogs, {corpus.duplicates} exact "
        f"duplicates removed, {corpus.train_overlap_removed} train pairs removed because their src or tgt "
        f"occurs in test")
    log("  " + ", ".join(f"{name} {parts[name].height}" for name in SPLITS))

    outputs = {}
    if not args.no_write:
        for name in SPLITS:
            outputs[name] = join(args.out, f"{name}.parquet")
            write_parquet(parts[name], outputs[name])
    all_rows = pl.concat(list(parts.values()))
    summary = {
        "packages_used": used,
        "packages_failed": failed,
        "catalogs": len(harvest.catalogs),
        "domains": dict(Counter(corpus.domain_split.values())),
        "test_domains": sorted(d for d, s in corpus.domain_split.items() if s == "test"),
        "dev_domains": sorted(d for d, s in corpus.domain_split.items() if s == "dev"),
        "unreadable_catalogs": harvest.bad_catalogs,
        "skipped_entries": dict(harvest.skipped),
        "pairs_before_dedupe": corpus.before_dedupe,
        "exact_duplicates_removed": corpus.duplicates,
        "train_removed_as_in_test": corpus.train_overlap_removed,
        "pairs": {name: parts[name].height for name in SPLITS},
        "placeholder_share": placeholder_share(all_rows),
        "placeholder_share_by_split": {name: placeholder_share(parts[name]) for name in SPLITS},
        "outputs": outputs,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
