"""What a notebook reports to whoever runs it: its headline result."""
from IPython.display import Markdown, display

HEADLINE_KEY = "cnn_course_headline"


def headline(text: str) -> None:
    """Show `text` as the notebook's headline result; `run_notebooks` collects it for its table."""
    display(Markdown(f"**Result:** {text}"), metadata={HEADLINE_KEY: text})
