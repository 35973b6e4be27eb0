"""examples/gettext-es-en/prepare.py on real .mo files laid out like unpacked .deb packages (no network)."""

from __future__ import annotations

import importlib.util
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from s2s_core.text.spans import find_spans

ROOT = Path(__file__).resolve().parents[2]
HEADER = ("Project-Id-Version: demo 1.0\nLanguage: es\nMIME-Version: 1.0\n"
          "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n"
          "Plural-Forms: nplurals=2; plural=(n != 1);\n")


@pytest.fixture(scope="module")
def script():
    path = ROOT / "examples/gettext-es-en/prepare.py"
    spec = importlib.util.spec_from_file_location("gettext_prepare", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def mo_bytes(messages: dict[str, str]) -> bytes:
    """A revision-0 .mo file, as Python's Tools/i18n/msgfmt.py writes it (keys sorted, no hash table)."""
    keys = sorted(messages, key=lambda k: k.encode("utf-8"))
    ids = strs = b""
    table = []
    for key in keys:
        k, v = key.encode("utf-8"), messages[key].encode("utf-8")
        table.append((len(ids), len(k), len(strs), len(v)))
        ids += k + b"\0"
        strs += v + b"\0"
    key_start = 7 * 4 + 16 * len(keys)
    value_start = key_start + len(ids)
    originals = b"".join(struct.pack("<2I", length, key_start + at) for at, length, _, _ in table)
    translations = b"".join(struct.pack("<2I", length, value_start + at) for _, _, at, length in table)
    head = struct.pack("<7I", 0x950412DE, 0, len(keys), 28, 28 + 8 * len(keys), 0, 0)
    return head + originals + translations + ids + strs


def install(root: Path, package: str, relpath: str, messages: dict[str, str]) -> Path:
    path = root / package / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mo_bytes({"": HEADER, **messages}))
    return path


MARKUP = "<b>Negrita</b> y %1$s\n  con {name} y &amp; "  # real newline and trailing spaces kept
DEMO = {
    "Open %s": "Abrir %s",
    "<b>Bold</b> and %1$s\n  with {name} and &amp; ": MARKUP,
    "menu\x04_File": "_Archivo",
    "tooltip\x04_File": "_Fichero",
    "%d file\x00%d files": "%d archivo\x00%d archivos",
    "Bluetooth": "Bluetooth",  # identical but has words: kept
    "%s: %s": "%s: %s",  # identical, only placeholders: dropped
    "translator-credits": "Juan Pérez",
    "NAME OF TRANSLATORS\x04Your names": "Juan Pérez",
    "Too long": "x" * 1001,
    "Cancel": "Cancelar",
}


def test_pairs_plurals_context_and_exact_text(script, tmp_path):
    install(tmp_path, "demo", "usr/share/locale/es/LC_MESSAGES/demo.mo", DEMO)
    install(tmp_path, "demo", "usr/share/locale/fr/LC_MESSAGES/demo.mo", {"Open %s": "Ouvrir %s"})
    install(tmp_path, "demo", "usr/share/locale/es_MX/LC_MESSAGES/demo.mo", {"Open %s": "Abre %s"})
    harvest = script.harvest_tree("demo", tmp_path / "demo")
    assert harvest.catalogs == ["demo:usr/share/locale/es/LC_MESSAGES/demo.mo"]
    got = {row_id: (src, tgt) for _, _, row_id, src, tgt in harvest.rows}
    by_text = {tgt: (row_id, src) for row_id, (src, tgt) in got.items()}

    assert by_text["Open %s"][1] == "Abrir %s"
    assert by_text["<b>Bold</b> and %1$s\n  with {name} and &amp; "][1] == MARKUP  # byte-exact
    # Context: removed from the text, kept in the id; both contexts give a pair.
    file_ids = sorted((i for i, (src, tgt) in got.items() if tgt == "_File"), key=lambda i: i.split("@")[1])
    assert [got[i][0] for i in file_ids] == ["_Archivo", "_Fichero"]
    assert file_ids[0].endswith("@menu") and file_ids[1].endswith("@tooltip")
    # Plural: singular and plural msgid, each with its Spanish form; the plural id is marked.
    assert by_text["%d file"][1] == "%d archivo" and by_text["%d files"][1] == "%d archivos"
    assert by_text["%d files"][0] == by_text["%d file"][0] + "/plural"
    assert by_text["Bluetooth"][1] == "Bluetooth"
    for dropped in ("%s: %s", "translator-credits", "Your names", "Too long", ""):
        assert dropped not in by_text
    assert harvest.skipped == {"identical, no words": 1, "translator credits": 2, "over 1000 chars": 1}
    assert all(i.startswith("demo/demo/") for i in got) and len(got) == len(harvest.rows) == 8
    assert not any("\x00" in src + tgt or "\x04" in src + tgt for src, tgt in got.values())
    spans = [s.text for s in find_spans(by_text["<b>Bold</b> and %1$s\n  with {name} and &amp; "][1])]
    assert spans == ["<b>", "</b>", "%1$s", "\n", "{name}", "&amp;"]


def test_libreoffice_layout_and_unreadable_catalogs(script, tmp_path):
    install(tmp_path, "libreoffice-l10n-es", "usr/lib/libreoffice/program/resource/es/LC_MESSAGES/sw.mo",
            {"STR_DELETE\x04Delete": "Eliminar"})
    bad = tmp_path / "libreoffice-l10n-es/usr/share/locale/es/LC_MESSAGES/broken.mo"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a catalog at all, honest")
    harvest = script.harvest_tree("libreoffice-l10n-es", tmp_path / "libreoffice-l10n-es")
    assert [row[1:] for row in harvest.rows] == [
        ("sw", "libreoffice-l10n-es/sw/1@STR_DELETE", "Eliminar", "Delete")]
    assert list(harvest.bad_catalogs) == ["libreoffice-l10n-es:usr/share/locale/es/LC_MESSAGES/broken.mo"]


def test_split_by_catalog_dedupe_and_no_test_text_in_train(script, tmp_path):
    harvest = None
    for d in range(12):
        messages = {f"Message {d}.{i} %s": f"Mensaje {d}.{i} %s" for i in range(8)}
        messages["Cancel"] = "Cancelar"  # in every catalog: one pair after dedupe, in test
        messages[f"Quit {d}"] = "Salir"  # Spanish text shared with other catalogs, English differs
        package = f"pkg{d % 3}"
        install(tmp_path, package, f"usr/share/locale/es/LC_MESSAGES/domain{d}.mo", messages)
    for package in ("pkg0", "pkg1", "pkg2"):
        harvest = script.harvest_tree(package, tmp_path / package, harvest)
    corpus = script.build_corpus(harvest.rows, test_share=0.2, dev_share=0.2)
    parts = corpus.parts
    assert corpus.before_dedupe == 12 * 10 and corpus.duplicates == 11

    # Every catalog is whole in one split; test and dev each hold at most their share.
    split_of_domain = corpus.domain_split
    assert sorted(split_of_domain) == sorted(f"domain{d}" for d in range(12))
    assert corpus.domain_split == script.assign_splits({f"domain{d}": 10 for d in reversed(range(12))},
                                                       0.2, 0.2)
    for name, part in parts.items():
        assert list(part.columns) == ["id", "src", "tgt"]
        assert all(dtype == pl.String for dtype in part.dtypes)
        for row_id in part["id"]:
            assert split_of_domain[row_id.split("/")[1]] == name
    counts = {name: sum(s == name for s in split_of_domain.values()) for name in ("train", "dev", "test")}
    assert counts == {"train": 8, "dev": 2, "test": 2}

    everything = [(s, t) for part in parts.values() for s, t in zip(part["src"], part["tgt"], strict=True)]
    assert len(everything) == len(set(everything))  # exact duplicates removed
    assert ("Cancelar", "Cancel") in zip(parts["test"]["src"], parts["test"]["tgt"], strict=True)
    test_src, test_tgt = set(parts["test"]["src"]), set(parts["test"]["tgt"])
    assert not test_src & set(parts["train"]["src"]) and not test_tgt & set(parts["train"]["tgt"])
    assert "Salir" not in set(parts["train"]["src"]) and "Salir" in set(parts["dev"]["src"])
    assert corpus.train_overlap_removed == 8  # the "Quit N" → "Salir" pairs of the 8 train catalogs
    ids = [i for part in parts.values() for i in part["id"]]
    assert len(ids) == len(set(ids))
    # Rows keep their stable order inside a split.
    train_ids = set(parts["train"]["id"])
    assert list(parts["train"]["id"]) == [row[2] for row in harvest.rows if row[2] in train_ids]
    assert script.placeholder_share(parts["dev"]) == round(16 / parts["dev"].height, 4)


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU msgfmt not installed")
def test_catalog_compiled_by_msgfmt(script, tmp_path):
    """msgfmt drops fuzzy entries, and stores %<PRIu64> messages apart (Python's gettext loses them)."""
    po = tmp_path / "real.po"
    po.write_text(r'''msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=3; plural=n == 1 ? 0 : n != 0 && n % 1000000 == 0 ? 1 : 2;\n"

#, c-format
msgid "read %<PRIu64> bytes of %s"
msgstr "leídos %<PRIu64> bytes de %s"

#, c-format
msgid "%d file"
msgid_plural "%d files"
msgstr[0] "%d archivo"
msgstr[1] "%d de archivos"
msgstr[2] "%d archivos"

msgctxt "verb"
msgid "Close\tnow\n"
msgstr "Cerrar\tahora\n"

#, fuzzy
msgid "Fuzzy one"
msgstr "Difuso"

msgid "Untranslated"
msgstr ""
''', encoding="utf-8")
    mo = tmp_path / "deb/usr/share/locale/es/LC_MESSAGES/real.mo"
    mo.parent.mkdir(parents=True)
    subprocess.run(["msgfmt", "-o", str(mo), str(po)], check=True)
    harvest = script.harvest_tree("real", tmp_path / "deb")
    pairs = {tgt: src for *_, src, tgt in harvest.rows}
    assert pairs == {
        "read %<PRIu64> bytes of %s": "leídos %<PRIu64> bytes de %s",
        "%d file": "%d archivo",
        "%d files": "%d archivos",  # the n = 2 form, not the "millions" one
        "Close\tnow\n": "Cerrar\tahora\n",
    }
    assert any(row_id.endswith("@verb") for _, _, row_id, _, _ in harvest.rows)
