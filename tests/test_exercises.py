"""The exercise generator: solutions/ is the single source of exercises/."""
import nbformat
import pytest

from course_utils.exercises import make_exercise, stale_exercises, strip_solutions


def test_solution_region_becomes_an_indented_stub():
    source = "def f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\nprint(1)"
    assert strip_solutions(source) == ("def f(x):\n    \"\"\"Doc.\"\"\"\n    # YOUR CODE HERE\n"
                                       "    raise NotImplementedError()\n\nprint(1)")


def test_several_regions_in_one_cell_each_get_a_stub():
    source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n" \
             "def g():\n        ### BEGIN SOLUTION\n        return 2\n        ### END SOLUTION"
    out = strip_solutions(source)
    assert out.count("raise NotImplementedError()") == 2 and "return" not in out
    assert "        # YOUR CODE HERE" in out


def test_unbalanced_markers_are_an_error():
    with pytest.raises(ValueError, match="unbalanced"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n")


def test_outputs_are_cleared_and_markdown_kept():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("### BEGIN SOLUTION is how solutions are marked"),
        nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
                                  outputs=[nbformat.v4.new_output("stream", text="1")], execution_count=3),
    ])
    exercise = make_exercise(nb)
    assert exercise.cells[0].source == nb.cells[0].source
    assert exercise.cells[1].outputs == [] and exercise.cells[1].execution_count is None
    assert nb.cells[1].execution_count == 3          # the solution itself is untouched


def test_every_solution_has_exercises_and_they_are_not_stale():
    assert stale_exercises() == [], "run: python -m course_utils.exercises"


def test_stale_exercise_is_reported(tmp_path):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir(), exercises.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])
    nbformat.write(nb, solutions / "99_demo.ipynb")
    assert stale_exercises(exercises, solutions) == ["99_demo.ipynb"]
    nbformat.write(make_exercise(nb), exercises / "99_demo.ipynb")
    assert stale_exercises(exercises, solutions) == []
    (exercises / "98_orphan.ipynb").write_text("{}")
    assert stale_exercises(exercises, solutions) == ["98_orphan.ipynb"]
