"""Similarity: renamed, recommented, reformatted copies are found; independent answers and common ones are not."""
from __future__ import annotations

import csv

import nbformat

from course_utils.grading import similarity
from course_utils.grading.tables import load_results
from grading_class import ASSIGNMENT, notebook, result, write_class

ORIGINAL = '''\
def conv_output_size(n, k, padding=0, stride=1):
    """Output width of a convolution."""
    if stride < 1:
        raise ValueError("stride must be positive")
    width = n + 2 * padding - k
    return width // stride + 1
'''
DISGUISED = '''\
def conv_output_size(size, kernel, padding=0, stride=1):
    # the usual formula
    if stride < 1: raise ValueError('stride must be positive')

    w = (size + 2*padding - kernel)   # no docstring here
    return (w // stride) + 1
'''
TWEAKED = ORIGINAL.replace("raise ValueError", "raise TypeError")
INDEPENDENT = '''\
def conv_output_size(n, k, padding=0, stride=1):
    import math
    assert stride > 0, "bad stride"
    return math.floor((n - k + 2 * padding) / stride) + 1
'''
STUB = '''\
def conv_output_size(n, k, padding=0, stride=1):
    """Output width."""
    # YOUR CODE HERE
    raise NotImplementedError()'''


def student(code: str, *extra) -> nbformat.NotebookNode:
    return notebook(add=code, cells=[nbformat.v4.new_code_cell(c) for c in extra])


def test_normalising_removes_names_comments_docstrings_and_format():
    import ast
    a, b = (similarity.normalise(ast.parse(src).body[0]) for src in (ORIGINAL, DISGUISED))
    assert a == b
    assert "v0" in a and "ValueError" in a and "Output width" not in a and "size" not in b
    assert similarity.tokens(a) == similarity.tokens(b)


def test_pairs_are_flagged_with_a_score_per_question(tmp_path):
    notebooks = {"ana": student(ORIGINAL), "José García": student(DISGUISED, "%matplotlib inline\nx = 1"),
                 "tweak": student(TWEAKED), "indy": student(INDEPENDENT),
                 "broken": student("def conv_output_size(n, k)\n    return n", "print('ok')"),
                 "stub": student(STUB)}
    results = [result(s, {"add": 1}) for s in notebooks] + [result("no_file", {}, status="invalid")]
    _, folder = write_class(tmp_path, results, notebooks)
    exercise = tmp_path / "exercise.ipynb"
    nbformat.write(student(STUB), exercise)
    paths = {s: r.notebook for s, r in load_results(folder).items()}
    report = similarity.similarity_report(paths, ["conv_output_size"], tmp_path / "grades", ASSIGNMENT, exercise)
    flagged = {(p.a, p.b): p.scores["conv_output_size"] for p in report.pairs}
    assert flagged[("José García", "ana")] == 1.0
    assert 0.9 <= flagged[("ana", "tweak")] < 1.0 and 0.9 <= flagged[("José García", "tweak")] < 1.0
    assert not any("indy" in pair or "stub" in pair for pair in flagged)
    assert report.notes["broken"] == ["cell 1 does not parse (SyntaxError); skipped"]
    assert report.notes["no_file"] == ["no notebook to compare"] and "José García" not in report.notes
    text = (tmp_path / "grades.similarity.md").read_text()
    assert "| José García | ana | 1.00 | `conv_output_size` 1.00 |" in text and "not findings" in text
    assert "- broken: cell 1 does not parse" in text
    with open(tmp_path / "grades.similarity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0] == {"student_a": "José García", "student_b": "ana", "question": "conv_output_size",
                       "ratio": "1.000"}


def canonical_tokens(source: str) -> list[str]:
    import ast
    return similarity.tokens(similarity.normalise(ast.parse(source).body[0]))


def test_short_answers_and_forms_shared_by_many_are_not_flagged():
    short, long, other = (canonical_tokens(src) for src in ("def add(a, b):\n    return a + b", ORIGINAL, INDEPENDENT))
    assert len(short) < similarity.MIN_TOKENS <= min(len(long), len(other))
    answers = {f"s{i:02d}": {"add": short, "conv": long} for i in range(8)}        # 8 of 20: the common answer
    answers |= {f"t{i}": {"add": short, "conv": other} for i in range(3)}          # 3 of 20: flagged
    answers |= {f"u{i}": {"conv": canonical_tokens(f"def f(x):\n    return x ** {i} + {i} * x - {i * i} // (x + {i})")}
                for i in range(9)}
    pairs, common = similarity.compare(answers)
    assert common == {"conv": 8}
    assert [(p.a, p.b, p.scores) for p in pairs] == [(a, b, {"conv": 1.0}) for a, b in
                                                     [("t0", "t1"), ("t0", "t2"), ("t1", "t2")]]


def test_every_definition_is_compared_but_not_the_graders_cell():
    nb = student(ORIGINAL, "class Net:\n    def forward(self, x):\n        return x")
    nb.cells.append(nbformat.v4.new_code_cell("def _cnn_course_export(names, folder):\n    pass",
                                              metadata={"tags": [similarity.GRADER_TAG]}))
    found, notes = similarity.functions(nb, None)
    assert sorted(found) == ["Net", "conv_output_size", "square"] and notes == []
