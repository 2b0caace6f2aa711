"""Sphinx extension: let plain ```mermaid fences through as text (no Pygments lexer exists).

The notebooks keep a plain ```mermaid fence (drawn natively by Jupyter, Colab and GitHub); in the
book, ``_assets/mermaid/init.js`` swaps the resulting code block for a diagram drawn by the
vendored mermaid. Without a lexer Sphinx would warn, and the build runs with -W.
"""

from pygments.lexers.special import TextLexer


def setup(app):
    app.add_lexer("mermaid", TextLexer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
