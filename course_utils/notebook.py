"""What a notebook reports to whoever runs it: its headline result; its figures shown with alt text."""
from IPython.display import Markdown, display

from .alt_text import show

HEADLINE_KEY = "cnn_course_headline"

__all__ = ["HEADLINE_KEY", "headline", "show"]


def headline(text: str) -> None:
    """Show `text` as the notebook's headline result; `run_notebooks` collects it for its table."""
    display(Markdown(f"**Result:** {text}"), metadata={HEADLINE_KEY: text})
