"""The check framework: marks and words, partial credit, warnings, tracebacks, check_all, hint, Watch and the tools."""
import linecache
import warnings

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils import checks
from course_utils.checks import KINDS, Mistake, check, check_all, grade, hint, load_all, question, questions_for, \
    written_for, written_question
from course_utils.checks.tools import Watch, expect_choice, expect_count, forbid, grad_check
from course_utils.grading.written import PLACEHOLDER, written_questions
from course_utils.run_notebooks import ROOT

NOTEBOOK = "99_framework_test"
STUDENT_FILE = "/tmp/ipykernel_1234/5678.py"          # where Jupyter puts a cell's code


def student(source: str) -> dict:
    """Functions defined as a notebook cell defines them (their code's file is the kernel's cell file)."""
    space: dict = {"np": np, "torch": torch, "F": F, "warnings": warnings}
    linecache.cache[STUDENT_FILE] = (len(source), None, source.splitlines(True), STUDENT_FILE)  # as IPython does
    exec(compile(source, STUDENT_FILE, "exec"), space)
    return space


@pytest.fixture
def registry():
    """Test-only questions of a notebook of their own, removed afterwards."""
    before, written_before = dict(checks.QUESTIONS), dict(checks.WRITTEN)

    @question("double", NOTEBOOK, points=2, hints=("look at the factor.", "return 2 * x."))
    def check_double(double):
        got = double(3)
        if got == 3:
            raise Mistake("double(3) returned 3: the input unchanged.", earned=0.5, credit="a number of the right type")
        if got != 6:
            raise Mistake(f"double(3) returned {got!r}, expected 6.")
        return "double(3) == 6"

    @question("half", NOTEBOOK, kind="predict")
    def check_half(half):
        return f"half is {half}" if half == 0.5 else (_ for _ in ()).throw(Mistake("not a half"))

    written_question("why_double", NOTEBOOK, points=2, hints=("think of the factor.",))
    yield
    checks.QUESTIONS.clear(), checks.QUESTIONS.update(before)
    checks.WRITTEN.clear(), checks.WRITTEN.update(written_before)
    checks._HINTS_SHOWN.clear()


def test_each_state_prints_its_emoji_and_its_word(registry, capsys):
    space = student("def right(x):\n    return 2 * x\ndef same(x):\n    return x\ndef wrong(x):\n    return 7\n"
                    "def stub(x):\n    raise NotImplementedError()\n")
    states = [check("double", space[name]).state for name in ("right", "same", "wrong", "stub")]
    states.append(check("why_double").state)
    out = capsys.readouterr().out.splitlines()
    assert states == ["pass", "part", "fail", "todo", "written"]
    assert [line.split("[")[0].strip() for line in out if line[:1] in "✅🟡❌⏳✍"] == \
        ["✅ PASS", "🟡 PART", "❌ FAIL", "⏳ TODO", "✍ WRITTEN"]
    written = " ".join(out[[i for i, line in enumerate(out) if line.startswith("✍")][0]:])
    assert "recorded for your instructor" in written and "points)" not in written


def test_partial_credit_is_clamped_to_the_questions_points_and_says_what_earned_it(registry):
    result = grade("double", student("def f(x):\n    return x\n")["f"])
    assert (result.passed, result.points, result.max_points) == (False, 0.5, 2)
    assert "Partial credit: 0.5 of 2 points for a number of the right type" in result.message

    @question("greedy", NOTEBOOK, points=1)
    def check_greedy(answer):
        raise Mistake("half right", earned=5, credit="everything")
    assert grade("greedy", 1).points == 1.0 and not grade("greedy", 1).passed


def test_a_warning_raised_by_the_students_code_is_reported_with_what_to_change(registry):
    f = student("def f(x):\n    warnings.warn('Converting a tensor with requires_grad=True to a scalar')\n    return 2 * x\n")["f"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # nothing escapes grade() into the cell
        result = grade("double", f)
    assert result.passed and "Warning while your code ran: UserWarning" in result.message
    assert "loss.item()" in result.message


def test_an_error_inside_torch_names_torch_and_the_students_line(registry):
    f = student("def f(x):\n    return F.cross_entropy(torch.ones(2, 3), torch.zeros(3).long())\n")["f"]
    message = grade("double", f).message
    assert message.startswith("your code raised ValueError")
    assert "raised inside torch, from your line 2: return F.cross_entropy(" in message


def test_an_error_in_the_students_own_line_is_quoted_as_theirs(registry):
    message = grade("double", student("def f(x):\n    return x / 0\n")["f"]).message
    assert "ZeroDivisionError" in message and "(from your line 2: return x / 0)" in message


def test_check_all_lists_every_question_of_the_sheet_it_runs_in(registry, capsys):
    space = student("def double(x):\n    return 2 * x\nhalf = None\n")
    results = check_all(namespace=space)
    out = capsys.readouterr().out
    assert [r.question for r in results] == ["double", "half", "why_double"]
    assert [r.state for r in results] == ["pass", "todo", "written"]
    assert out.startswith(f"{NOTEBOOK}: 3 questions")
    assert "2 of 3 automatic points; 1 pass, 1 todo, 1 written" in out


def test_check_all_asks_for_the_notebook_when_the_namespace_names_none(registry):
    with pytest.raises(ValueError, match="cannot tell which notebook"):
        check_all(namespace={})


def test_hint_gives_one_more_tier_per_call_and_stops_at_the_last(registry):
    texts = [hint("double") for _ in range(3)]
    assert texts[0].startswith("💡 HINT 1/2 [double] look at the factor.") and "again for more" in texts[0]
    assert texts[1].startswith("💡 HINT 2/2 [double] return 2 * x.") and "last hint" in texts[1]
    assert texts[2] == texts[1]
    assert "unknown question id" in hint("nope")


def test_a_question_kind_must_be_known():
    with pytest.raises(ValueError, match="kind"):
        question("odd", NOTEBOOK, kind="essay")


def test_watch_sees_a_forbidden_function_through_a_wrapper_and_counts_the_students_lines():
    space = student("def wrapped(z):\n    return F.softmax(z, dim=1)\n"
                    "def loops(a):\n    a = np.asarray(a)\n    out = np.zeros_like(a)\n"
                    "    for i in range(a.shape[0]):\n        for j in range(a.shape[1]):\n"
                    "            out[i, j] = 2 * a[i, j]\n    return out\n"
                    "def vectorised(a):\n    return 2 * np.asarray(a)\n")
    with Watch({torch.softmax: "torch.softmax", F.softmax: "F.softmax"}) as w:
        space["wrapped"](torch.randn(2, 3))
    assert w.used.startswith("F.softmax")
    with pytest.raises(Mistake, match="wraps it does not count"):
        forbid(w.used, "softmax", "use exp and sum")
    lines = {}
    for name in ("loops", "vectorised"):
        for n in (4, 16):
            with Watch() as w:
                space[name](np.ones((n, n)))
            lines[name, n] = w.lines
    assert lines["loops", 16] > 10 * lines["loops", 4] > 0
    assert lines["vectorised", 16] == lines["vectorised", 4] == 1


def test_watch_sees_autograd():
    z = torch.randn(3, requires_grad=True)
    with Watch({torch.Tensor.backward: "autograd (.backward)"}) as w:
        z.sum().backward()
    assert w.used == "autograd (.backward)"


@pytest.mark.parametrize("value", [3, np.int64(3), torch.tensor(3)])
def test_expect_count_takes_integers_of_any_library(value):
    assert expect_count(value, 3, "n") == 3


@pytest.mark.parametrize("value", [3.0, np.float32(3), torch.tensor(3.0), True, "3"])
def test_expect_count_refuses_a_float_even_when_it_is_whole(value):
    with pytest.raises(Mistake, match="whole number"):
        expect_count(value, 3, "n")


def test_expect_choice_explains_each_wrong_option():
    options = {"a": "right: it is so.", "b": "wrong: b misses it.", "c": "wrong: c overdoes it."}
    assert expect_choice(" A ", options, "a", "q1") == "right: it is so."
    with pytest.raises(Mistake, match=r"\(b\) wrong: b misses it"):
        expect_choice("b", options, "a", "q1")
    with pytest.raises(Mistake, match="not an option"):
        expect_choice("d", options, "a", "q1")
    with pytest.raises(Mistake, match=r"\(c\) wrong: c overdoes it"):
        expect_choice("ac", options, {"a", "b"}, "q2")
    assert expect_choice(["b", "a"], options, {"a", "b"}, "q2")


def test_grad_check_passes_autograds_own_gradient_and_fails_one_off_by_a_little():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    (x.tanh() ** 2).sum().backward()
    exact = 2 * x.detach().tanh() * (1 - x.detach().tanh() ** 2)
    assert grad_check(exact, x.grad, "dx") < 1e-12
    with pytest.raises(Mistake, match="relative error .* should be below 1e-07"):
        grad_check(exact * (1 + 1e-4), x.grad, "dx")


COURSE = sorted({q.notebook for q in load_all().values()})


def test_every_notebook_has_six_checked_exercises_in_four_kinds_and_a_written_question():
    assert len(COURSE) == 6
    for notebook in COURSE:
        auto = questions_for(notebook)
        assert len(auto) >= 6 and len({q.kind for q in auto}) >= 4, (notebook, [(q.id, q.kind) for q in auto])
        assert written_for(notebook), notebook
        assert all(set(q.kind for q in auto) <= set(KINDS) for q in auto)


@pytest.mark.parametrize("notebook", COURSE)
def test_written_questions_match_the_tagged_cells_of_the_sheets(notebook):
    registered = {w.id: w.max_points for w in written_for(notebook)}
    for folder in ("exercises", "solutions"):
        sheet = nbformat.read(ROOT / folder / f"{notebook}.ipynb", as_version=4)
        cells = written_questions(sheet)
        assert {w.id: w.max_points for w in cells} == registered, folder
        assert all((w.placeholder == PLACEHOLDER) == (folder == "exercises") for w in cells), folder


@pytest.mark.parametrize("notebook", COURSE)
def test_every_question_has_at_least_two_hint_tiers(notebook):
    for q in questions_for(notebook) + written_for(notebook):
        assert len(q.hints) >= (1 if q.kind == "written" else 2), q.id


# ---------- what a student sees in a notebook: printed once, wrapped, the input named ----------

def jupyter_shows(value) -> tuple:
    """What Jupyter displays for a cell whose last expression is `value` (an empty bundle: nothing)."""
    from IPython.core.formatters import DisplayFormatter
    return DisplayFormatter().format(value)


def test_hint_prints_once_and_jupyter_displays_nothing_more(registry, capsys):
    text = hint("double")
    out = capsys.readouterr().out
    assert out.count("HINT 1/2 [double]") == 1 and text.startswith("💡 HINT 1/2 [double]")
    assert jupyter_shows(text) == ({}, {})
    assert jupyter_shows("a plain str")[0]                  # the helper does see what a plain value shows


def test_a_mistyped_id_gets_the_nearest_id_and_only_this_sheets_ids(registry, capsys):
    space = student("def double(x):\n    return 2 * x\n")
    space.update(hint=hint, check=check)
    exec("text = hint('dubble')", space)
    assert space["text"] == "unknown question id 'dubble'. Did you mean 'double'? This sheet's ids " \
                           f"({NOTEBOOK}): double, half, why_double."
    exec("result = check('output size', double)", space)
    assert "Did you mean 'output_size'?" in space["result"].message and "output_size," not in space["result"].message
    assert f"This sheet's ids ({NOTEBOOK}): double, half, why_double." in space["result"].message


def test_check_all_returns_nothing_jupyter_displays_and_fits_the_width(registry, capsys):
    @question("wordy", NOTEBOOK)
    def check_wordy(wordy):
        raise Mistake("a long explanation " * 12)
    results = check_all(namespace=student("def wordy():\n    pass\nhalf = 0.5\n"))
    assert [r.state for r in results] == ["todo", "pass", "fail", "written"]
    assert jupyter_shows(results) == ({}, {})
    assert all(len(line) <= checks.WIDTH for line in capsys.readouterr().out.splitlines())


def test_long_messages_wrap_at_word_boundaries(registry, capsys):
    words = "the gradient of every point" + " is checked against autograd's in float64 at every point" * 5

    @question("wordy", NOTEBOOK)
    def check_wordy(wordy):
        raise Mistake(words, "a hint that is long enough to wrap as well, " * 4)
    check("wordy", lambda: None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 3 and all(len(line) <= checks.WIDTH for line in lines)
    assert " ".join(" ".join(lines).split()).startswith(f"❌ FAIL [wordy] {words}")   # no word cut in two


def test_check_without_an_answer_takes_it_from_the_notebook_or_says_it_is_not_defined(registry, capsys):
    space = student("half = 0.5\n")
    space["check"] = check
    exec("missing = check('double')\nfound = check('half')", space)
    assert space["missing"].state == "todo" and space["found"].state == "pass"
    assert space["missing"].message.startswith("not defined yet: this notebook has no `double`. Run the cell that "
                                               "defines it first")


def written_sheet(path, text: str | None):
    """A saved notebook with the written-answer cell of why_double holding `text` (None: no such cell)."""
    cells = [nbformat.v4.new_markdown_cell("Why double?")]
    if text is not None:
        cells.append(nbformat.v4.new_markdown_cell(text, metadata={"tags": ["written-answer"],
                                                                   "written_question": "why_double"}))
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


@pytest.mark.parametrize("text, says", [
    (PLACEHOLDER, "not answered yet: the saved notebook's answer cell above still says YOUR ANSWER HERE"),
    ("", "not answered yet"),
    ("Because two is twice one.", "recorded for your instructor"),
    (None, "not answered yet: the saved notebook has no written-answer cell for 'why_double'"),
])
def test_a_written_check_reads_the_saved_answer_cell(registry, tmp_path, monkeypatch, text, says):
    assert checks.WRITTEN_PLACEHOLDER == PLACEHOLDER                       # the sheets' placeholder
    written_sheet(tmp_path / "sheet.ipynb", text)
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "sheet.ipynb"))        # as JupyterLab starts a kernel
    result = check("why_double")
    assert result.written and result.message.startswith(says), result.message


def test_an_error_in_student_code_names_the_call_and_its_common_cause(registry):
    from course_utils.checks.tools import calling

    @question("reshape_it", NOTEBOOK)
    def check_reshape_it(reshape_it):
        with calling("reshape_it(x of shape (42,))"):
            reshape_it(torch.zeros(42))
        return "fine"
    message = grade("reshape_it", student("def f(x):\n    return x.reshape(4, 3)\n")["f"]).message
    assert message.startswith("your code raised RuntimeError: shape '[4, 3]' is invalid for input of size 42")
    assert "\n   Called as: reshape_it(x of shape (42,)).\n   Hint: a reshape or view asked for a shape" in message
    assert "Called as" not in grade("double", student("def f(x):\n    return x / 0\n")["f"]).message


def test_a_call_described_by_its_arguments_names_shapes_and_values(registry):
    from course_utils.checks.tools import calling

    @question("flatten_it", NOTEBOOK)
    def check_flatten_it(flatten_it):
        x, weight = torch.zeros(5, 16, 12, 12), torch.zeros(64, 2304)
        with calling("flatten_it", x, weight, scale=1):
            flatten_it(x, weight, scale=1)
        return "fine"
    message = grade("flatten_it", student("def f(x, weight, *, scale=1):\n    return x @ weight.T\n")["f"]).message
    assert "\n   Called as: flatten_it(Tensor of shape (5, 16, 12, 12) (float32), Tensor of shape (64, 2304) " \
           "(float32), scale=1)." in message
    assert "Hint: a matrix product or linear layer got inputs whose inner sizes differ" in message


def test_a_check_result_is_not_displayed_again_as_a_cells_value(registry, capsys):
    result = check("double", lambda x: 2 * x)
    assert "✅ PASS [double]" in capsys.readouterr().out                  # printed once, by check itself
    assert jupyter_shows(result) == ({}, {})


def test_a_mistyped_id_before_any_answer_lists_the_sheet_jupyterlab_opened(registry, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", f"/home/student/exercises/{NOTEBOOK}.ipynb")
    space = student("x = 1\n")
    space.update(hint=hint)
    exec("text = hint('dubble')", space)
    assert space["text"].endswith(f"This sheet's ids ({NOTEBOOK}): double, half, why_double.")


def test_a_written_check_that_cannot_see_the_notebook_does_not_reassure(registry, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)                  # papermill, VS Code, a console
    message = check("why_double").message
    assert message.startswith("recorded for your instructor and graded by hand if the written-answer cell above holds")
    assert "cannot open the notebook file" in message
