"""coursetools/lms_names.py reads back the names Canvas and Moodle give the files of a bulk download.

The oracle is each LMS's documented naming rule, written out here as the LMS applies it (`_canvas_name`:
Canvas's sortable name with every non-word character removed and lower-cased, `_LATE`, user id, submission id,
the upload's name with Canvas's `-N` for a re-upload; `_moodle_name`: mod/assign's full name with `_` as spaces,
the participant id, `assignsubmission_<plugin>`, the upload's name): every name built by the rule must parse
back to exactly what went in, for names with spaces, accents, apostrophes and underscores in the upload.
"""
from __future__ import annotations

import re
import unicodedata

import pytest

from coursetools.lms_names import LmsName, parse_canvas_name, parse_lms_name, parse_moodle_name, split_resubmission

STUDENTS = [("Doe, John", "John Doe"), ("Müller, José", "José Müller"), ("O'Neil, Siobhán", "Siobhán O'Neil"),
            ("van der Berg, Anna Maria", "Anna Maria van der Berg"), ("Nguyễn, Thị Minh", "Thị Minh Nguyễn")]
UPLOADS = ["a2_transformer.ipynb", "transformer.py", "a2_transformer.zip", "metrics.json", "vit_cifar10.pt",
           "my notebook (final).ipynb"]


def _canvas_name(sortable: str, user: int, sub: int, upload: str, late=False, copy=0) -> str:
    lastfirst = re.sub(r"[^\w]", "", sortable).lower()  # Canvas: non-word characters removed, lower case
    if copy:
        stem, dot, ext = upload.rpartition(".")
        upload = f"{stem}-{copy}.{ext}" if dot else f"{upload}-{copy}"
    return f"{lastfirst}{'_LATE' if late else ''}_{user}_{sub}_{upload}"


def _moodle_name(full: str, participant: int, upload: str = "", plugin="file") -> str:
    name = f"{full.replace('_', ' ')}_{participant}_assignsubmission_{plugin}"
    return f"{name}_{upload}" if upload else name


@pytest.mark.parametrize("late", [False, True])
@pytest.mark.parametrize("copy", [0, 1, 12])
@pytest.mark.parametrize("sortable, _full", STUDENTS)
def test_canvas_names_parse_back_to_what_canvas_put_in(sortable, _full, late, copy):
    for i, upload in enumerate(UPLOADS):
        name = _canvas_name(sortable, 4200 + i, 98000 + i, upload, late, copy)
        parsed = parse_canvas_name(name)
        assert parsed == LmsName("canvas", re.sub(r"[^\w]", "", sortable).lower(), str(4200 + i), str(98000 + i),
                                 late, upload, copy, name.split("_", 3 + late)[-1]), name
        assert parse_lms_name(name) == parsed  # the dispatcher never takes it for Moodle's


@pytest.mark.parametrize("_sortable, full", STUDENTS + [("", "Participant"), ("", "Group A-John Doe")])
def test_moodle_names_parse_back_to_what_moodle_put_in(_sortable, full):
    for i, upload in enumerate(UPLOADS + [""]):  # "": the folder of "download submissions in folders"
        name = _moodle_name(full, 1000 + i, upload)
        assert parse_moodle_name(name) == LmsName("moodle", full, str(1000 + i), None, False, upload, 0, upload)
        assert parse_lms_name(name) == parse_moodle_name(name)
    online = _moodle_name(full, 7, "onlinetext.html", plugin="onlinetext")
    assert parse_moodle_name(online).original == "onlinetext.html"


def test_an_upload_whose_own_name_looks_like_a_canvas_name_keeps_it():
    inner = "smithann_11_22_a2_transformer.ipynb"  # the student uploaded a file with such a name
    parsed = parse_canvas_name(_canvas_name("Doe, John", 4211, 90001, inner))
    assert (parsed.user_id, parsed.submission_id, parsed.original) == ("4211", "90001", inner)


def test_a_name_decomposed_by_macos_unzip_reads_as_the_lms_wrote_it():
    name = _canvas_name("Müller, José", 4213, 90003, "a2_transformer.ipynb")
    nfd = unicodedata.normalize("NFD", name)
    assert nfd != name and parse_canvas_name(nfd).student_key == "müllerjosé"
    moodle = unicodedata.normalize("NFD", _moodle_name("José Müller", 5, "x.ipynb"))
    assert parse_moodle_name(moodle).student_key == "José Müller"


@pytest.mark.parametrize("name", [
    "ada.zip", "ada", "a2_transformer.ipynb", "doejohn_4211_a2_transformer.ipynb",  # no submission id
    "doejohn_x4211_90001_a.ipynb", "doejohn_4211_90001_", "_4211_90001_a.ipynb",
    "John Doe_1002_assignfeedback_file_x.pdf", "John Doe_assignsubmission_file_x.ipynb",
    "doejohn_4211_90001_sub/a.ipynb",  # a path, not a name
])
def test_names_of_neither_lms_are_refused_whole(name):
    assert parse_canvas_name(name) is None and parse_moodle_name(name) is None and parse_lms_name(name) is None


@pytest.mark.parametrize("name, expected", [
    ("a2_transformer-1.ipynb", ("a2_transformer.ipynb", 1)), ("transformer-3.py", ("transformer.py", 3)),
    ("a2_transformer.ipynb", ("a2_transformer.ipynb", 0)), ("notes-2", ("notes", 2)),
    ("model-v2-1.pt", ("model-v2.pt", 1)), ("model-v2.pt", ("model-v2.pt", 0)),
])
def test_canvas_resubmission_suffix(name, expected):
    assert split_resubmission(name) == expected
