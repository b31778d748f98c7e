"""The course runner: a notebook is ok only when it reaches its headline; it shows progress, quietly."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_utils.run_notebooks import RunResult, format_table, main, run_notebook, section_titles


def write_notebook(path, *sources):
    nb = new_notebook(cells=[new_code_cell("smoke = False", metadata={"tags": ["parameters"]}),
                             *[new_code_cell(s) for s in sources]],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                               "language": "python"}})
    nbformat.write(nb, path)
    return path


def test_headline_collected_and_early_exit_detected(tmp_path):
    good = write_notebook(tmp_path / "good.ipynb",
                          "from course_utils.notebook import headline",
                          "headline(f'accuracy 99 % smoke={smoke}')")
    quits = write_notebook(tmp_path / "quits.ipynb",
                           "from course_utils.notebook import headline\nimport sys\nsys.exit()",
                           "headline('never shown')")
    fails = write_notebook(tmp_path / "fails.ipynb", "1 / 0")
    out = tmp_path / "out"
    results = [run_notebook(p, out, {"smoke": True}) for p in (good, quits, fails)]
    assert results[0].status == "ok" and results[0].headline == "accuracy 99 % smoke=True"
    assert results[1].status.startswith("incomplete")
    assert results[2].status.startswith("error: ZeroDivisionError")
    assert (out / tmp_path.name / "good.ipynb").is_file()
    table = format_table(results)
    assert "accuracy 99 %" in table and table.count("FAILED") == 2


def test_table_lists_every_notebook():
    table = format_table([RunResult("a.ipynb", "ok", 1.5, "x"), RunResult("b.ipynb", "error: E", 2.0, "")])
    assert table.splitlines()[1].split()[:3] == ["a.ipynb", "ok", "1.5"]
    assert "error: E" in table.splitlines()[2]


def test_course_run_shows_progress_sections_and_headline_and_no_transport_warning(tmp_path, capfd):
    nb = write_notebook(tmp_path / "sections.ipynb", "from course_utils.notebook import headline")
    nb_node = nbformat.read(nb, as_version=4)
    nb_node.cells[1:1] = [new_markdown_cell("# Title\n\nintro"), new_markdown_cell("## 2. The second part")]
    nb_node.cells.append(new_code_cell("headline('done in the second part')"))
    nbformat.write(nb_node, nb)
    assert section_titles(nb_node)[nb_node.cells[-1].id] == "2. The second part"
    assert main([str(nb), "--smoke", "--kernel", "python3", "--out", str(tmp_path / "out")]) == 0
    out, err = capfd.readouterr()
    assert "sections · 2. The second part" in out and "3/3" in out           # the bar: section and cells
    assert "✓ sections.ipynb in " in out and ": done in the second part" in out
    assert "without encryption" not in out + err
