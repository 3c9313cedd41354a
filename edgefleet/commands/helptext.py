"""`--help` text: descriptions wrapped to the terminal, example lines kept as written (copyable).

Use `formatter_class=Formatter` and `epilog=examples("edgefleet x ...", ...)`: a line of a description or
epilog that starts with spaces (an example) is printed as it is; any other line is wrapped, so a long
description reads as a paragraph and a line break written into the text stays one.
"""

from __future__ import annotations

import argparse
import textwrap


class Formatter(argparse.HelpFormatter):
    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for line in text.splitlines() or [""]:
            if line[:1].isspace() or not line:
                out.append(indent + line)
            else:
                out.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent,
                                         break_on_hyphens=False))
        return "\n".join(out)


def examples(*lines: str) -> str:
    """An epilog of example command lines, one per line, indented as the project's other examples are."""
    return ("examples:\n" if len(lines) > 1 else "example:\n") + "\n".join(f"  {line}" for line in lines)


__all__ = ["Formatter", "examples"]
